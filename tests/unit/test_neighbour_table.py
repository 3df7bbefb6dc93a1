"""The neighbour table's state machine (clock-free) and its ARP frames."""

from p4cs.controller import neighbours as nb
from p4cs.controller.neighbours import (FAILED, INCOMPLETE, PERMANENT, REACHABLE, STALE, Change,
                                        NeighbourTable, Timers)
from p4cs.csproc.packet import ip_int

PORT_MACS = {1: "02:00:00:00:01:fe", 2: "02:00:00:00:02:fe"}
PORT_IPS = {1: "10.0.1.254", 2: "10.0.2.254"}
PORT_MACS[3], PORT_IPS[3] = "02:00:00:00:03:fe", "10.0.2.254"     # same subnet as port 2
SUBNETS = {1: (ip_int("10.0.1.0"), 0xFFFFFF00), 2: (ip_int("10.0.2.0"), 0xFFFFFF00),
           3: (ip_int("10.0.2.0"), 0xFFFFFF00)}
SRV = ip_int("10.0.2.1")
MAC1, MAC2 = bytes.fromhex("020000000201"), bytes.fromhex("0200000002aa")


def table() -> NeighbourTable:
    return NeighbourTable(PORT_MACS, PORT_IPS, SUBNETS,
                          Timers(refresh_s=60, retrans_s=1, probes=3, retry_s=10))


def reply(sip: int, sha: bytes, tip: int) -> bytes:
    frame = bytearray(nb.arp_request(sha, sip, tip))
    frame[20:22] = (2).to_bytes(2, "big")        # oper: reply
    return bytes(frame)


def test_request_goes_out_of_the_subnet_ports_from_the_port_address():
    t = table()
    t.want("10.0.2.1", None, now=0)
    reqs, changes = t.tick(0)
    assert changes == [] and [r.port for r in reqs] == [2, 3]
    f = reqs[0].frame
    assert f[:6] == b"\xff" * 6 and f[6:12] == bytes.fromhex("0200000002fe")
    assert f[28:32] == ip_int("10.0.2.254").to_bytes(4, "big") and f[38:42] == SRV.to_bytes(4, "big")
    assert nb.parse_arp_reply(f) is None             # a request is not a reply
    assert nb.parse_arp_reply(reply(SRV, MAC1, ip_int("10.0.2.254"))) == (
        SRV, MAC1, ip_int("10.0.2.254"))


def test_unknown_port_asks_on_every_port():
    t = table()
    t.want("192.168.7.7", None, now=0)
    reqs, _ = t.tick(0)
    assert sorted(r.port for r in reqs) == [1, 2, 3]


def test_answer_port_is_learnt_and_forgotten_on_failure():
    t = table()
    t.want(SRV, None, now=0)
    t.tick(0)
    t.learn(SRV, MAC1, 3, now=0)
    reqs, _ = t.tick(60)
    assert [r.port for r in reqs] == [3]              # the refresh asks where it answered
    t.tick(61)
    t.tick(62)
    t.tick(70)                                        # failed: the port is unknown again
    reqs, _ = t.tick(80)
    assert [r.port for r in reqs] == [2, 3]


def test_configured_port_is_kept():
    t = table()
    t.want(SRV, 2, now=0)
    assert [r.port for r in t.tick(0)[0]] == [2]


def test_resolve_refresh_stale_and_fail():
    t = table()
    t.want(SRV, None, now=0)
    t.tick(0)
    assert t.route(SRV) is None and t.entries[SRV].state == INCOMPLETE
    assert t.learn(SRV, MAC1, 2, now=0.5) == Change(SRV, None, (2, MAC1))
    assert t.route(SRV) == (2, MAC1) and t.entries[SRV].state == REACHABLE
    assert t.tick(59) == ([], [])
    reqs, changes = t.tick(60.5)                     # refresh: stale, still used, asked again
    assert [r.port for r in reqs] == [2] and changes == [] and t.entries[SRV].state == STALE
    assert t.route(SRV) == (2, MAC1)
    assert t.learn(SRV, MAC1, 2, now=61) is None     # confirmed, same MAC: no change
    assert t.entries[SRV].state == REACHABLE
    t.tick(121)
    t.tick(122)
    t.tick(123)                                      # three requests unanswered
    reqs, changes = t.tick(124)
    assert reqs == [] and changes == [Change(SRV, (2, MAC1), None)]
    assert t.entries[SRV].state == FAILED and t.route(SRV) is None
    assert t.tick(130) == ([], [])
    reqs, _ = t.tick(134)                            # retry_s later: asked again
    assert len(reqs) == 2 and t.entries[SRV].state == INCOMPLETE


def test_incomplete_fails_after_probes_then_retries():
    t = table()
    t.want(SRV, None, now=0)
    for now in (0, 1, 2):
        assert len(t.tick(now)[0]) == 2
    reqs, changes = t.tick(3)
    assert reqs == [] and changes == [] and t.entries[SRV].state == FAILED
    assert t.next_deadline() == 13


def test_moved_mac_is_a_change():
    t = table()
    t.want(SRV, None, now=0)
    t.learn(SRV, MAC1, 2, now=0)
    assert t.learn(SRV, MAC2, 2, now=5) == Change(SRV, (2, MAC1), (2, MAC2))
    assert t.route(SRV) == (2, MAC2)


def test_static_entries_win_and_unwanted_replies_are_ignored():
    t = table()
    t.add_static("10.0.2.1", 2, MAC1)
    t.want("10.0.2.1", None, now=0)
    assert t.entries[SRV].state == PERMANENT and t.tick(0) == ([], [])
    assert t.learn(SRV, MAC2, 2, now=1) is None and t.route(SRV) == (2, MAC1)
    assert t.learn(ip_int("10.0.2.9"), MAC2, 2, now=1) is None
    assert ip_int("10.0.2.9") not in t.entries
