"""Fair admission of half-bound connections: a per-address quota, and eviction of the
biggest holder's least recently active idle connection when the global cap is reached."""

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from p4cs.csproc import Config
from p4cs.csproc.admission import Admission
from p4cs.csproc.stats import Stats

from cs_harness import CLI_MAC, SW_C, VIP, Harness, pkts

ATTACKER = "192.168.1.66"
GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


class Client:
    """One TCP connection from ``ip``:``port`` to the VIP, driven through ``h``."""

    def __init__(self, h: Harness, ip: str, port: int):
        self.h, self.ip, self.port, self.isn, self.sisn = h, ip, port, 5000 + port, None

    def frame(self, flags, rel=0, data=b"", seq=None, ack=None):
        t = TCP(sport=self.port, dport=80, flags=flags, window=64240,
                seq=(self.isn + 1 + rel) if seq is None else seq,
                ack=((self.sisn or 0) + 1) if ack is None else ack,
                options=[("MSS", 1460)] if flags == "S" else [])
        p = Ether(src=CLI_MAC, dst=SW_C) / IP(src=self.ip, dst=VIP) / t
        return bytes(p / Raw(data) if data else p)

    def connect(self):
        """SYN, SYN-ACK, ACK: the effects of the ACK."""
        (_, synack), = pkts(self.h.client(self.frame("S", seq=self.isn, ack=0)))
        self.sisn = synack[TCP].seq
        return self.h.client(self.frame("A"))

    def send(self, data, rel=0):
        return self.h.client(self.frame("PA", rel=rel, data=data))


def resets(eff, port=None):
    return [p for _, p in pkts(eff) if "R" in p[TCP].flags and (port is None or p[TCP].dport == port)]


def syns_to_server(eff):
    return [p for port, p in pkts(eff) if port == 2 and p[TCP].flags == "S"]


def test_per_client_quota():
    h = Harness(config=Config(max_half_bound_per_client=2))
    a = [Client(h, ATTACKER, 1000 + i) for i in range(3)]
    assert not resets(a[0].connect()) and not resets(a[1].connect())
    assert resets(a[2].connect(), port=1002)
    st = h.eng.stats
    assert st.limit_half_bound_client == 1 and st.half_bound == 2
    b = Client(h, "192.168.1.10", 2000)
    assert not resets(b.connect()) and syns_to_server(b.send(GET))


def test_cap_evicts_the_least_recently_active_idle_connection_of_the_biggest_holder():
    h = Harness(config=Config(max_half_bound=3))
    a = [Client(h, ATTACKER, 1000 + i) for i in range(3)]
    for c in a:
        assert not resets(c.connect())
    a[0].send(b"GET /slow")              # activity: a[1] is now the least recently active
    b = Client(h, "192.168.1.10", 2000)
    eff = b.connect()
    (rst,) = resets(eff)
    assert rst[TCP].dport == 1001 and rst[IP].dst == ATTACKER
    st = h.eng.stats
    assert st.evicted_idle == 1 and st.half_bound == 3 and st.limit_half_bound == 0
    assert syns_to_server(b.send(GET))
    # The biggest holder's next connection gets the RST itself
    late = Client(h, ATTACKER, 1003)
    assert resets(late.connect(), port=1003)
    assert st.limit_half_bound == 1 and st.evicted_idle == 1


def test_equal_holders_do_not_evict_each_other():
    h = Harness(config=Config(max_half_bound=2))
    Client(h, "192.168.1.1", 1000).connect()
    Client(h, "192.168.1.2", 1000).connect()
    assert resets(Client(h, "192.168.1.3", 1000).connect(), port=1000)
    assert h.eng.stats.limit_half_bound == 1 and h.eng.stats.evicted_idle == 0


def test_connections_with_a_request_are_not_evicted():
    h = Harness(config=Config(max_half_bound=2))
    a = [Client(h, ATTACKER, 1000 + i) for i in range(2)]
    for c in a:
        c.connect()
        assert syns_to_server(c.send(GET))     # CONNECTING: not idle
    assert resets(Client(h, "192.168.1.10", 2000).connect(), port=2000)
    assert h.eng.stats.evicted_idle == 0


def test_one_address_holding_the_cap_does_not_lock_out_others():
    """The tester's case: one address keeps ~300 idle connections open against a cap of 300;
    a legitimate client's requests all get through (before: 1 of 80)."""
    h = Harness(config=Config(max_half_bound=300, max_half_bound_per_client=1000))
    port = 1000
    ok = 0
    for i in range(80):
        for _ in range(10):               # the attacker keeps opening idle connections
            Client(h, ATTACKER, port).connect()
            port += 1
        b = Client(h, "192.168.1.10", 20000 + i)
        if not resets(b.connect(), port=b.port) and syns_to_server(b.send(GET)):
            ok += 1
        h.now += 0.05
    assert ok == 80
    assert h.eng.stats.half_bound == 300 and h.eng.stats.evicted_idle >= 50


def test_bookkeeping_is_constant_time_and_exact():
    st = Stats()
    adm = Admission(cap=10, per_client=5, stats=st)

    class C:
        def __init__(self, ip, cid):
            self.id = cid
            self.cl = type("L", (), {"ip": ip})()

    conns = [C(ip, i) for i, ip in enumerate([1, 1, 1, 2, 2, 3])]
    for c in conns:
        assert adm.admit(c.cl.ip) == (True, None)
        adm.opened(c)
    assert adm._top == 3 and adm._holders[3] == {1} and st.half_bound == 6
    for c in conns[:2]:
        adm.closed(c)
    assert adm._top == 2 and adm._holders[2] == {2} and adm._holders[1] == {1, 3}
    adm.busy(conns[3])
    for c in conns[2:]:
        adm.closed(c)
    assert adm._top == 0 and not adm._count and not adm._holders and not adm._idle
    assert st.half_bound == 0
