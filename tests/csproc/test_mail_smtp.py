"""SMTP services: the switch greets, answers EHLO and MAIL FROM, decides on RCPT TO,
replays the envelope to the chosen server and splices with the right deltas."""

import pytest
from scapy.layers.inet import IP, TCP

from p4cs.csproc import InstallFlows, RemoveFlows

from mail_harness import M, Client, Srv, check_splice, mail_harness
from cs_harness import S1, S2, of, payload, pkts

RULES = '''
spam:  if (smtp.from == "spam@bad.example") { reject; }
moved: if (smtp.to == "old@b.example") { redirect("new@b.example"); }
to_b:  if (suffix(smtp.to, "@b.example")) { routeTo(b); }
to_a:  if (suffix(smtp.to, "@a.example")) { routeTo(a); }
'''

EHLO = b"EHLO client.example\r\n"
MAIL = b"MAIL FROM:<alice@x.example> SIZE=1000\r\n"


def envelope(h, rcpt=b"RCPT TO:<bob@b.example>\r\n"):
    cl = Client(h)
    assert cl.connect() == b"220 www ESMTP\r\n"
    caps = cl.say(EHLO)
    assert caps == b"250-www\r\n250-SIZE 10485760\r\n250 8BITMIME\r\n"
    assert cl.say(MAIL) == b"250 2.1.0 OK\r\n"
    eff = cl.send(rcpt)
    assert cl.take(eff) == b""          # the server answers RCPT TO, through the splice
    return cl, eff


def syn_of(h, eff):
    syn = h.to_server_syn(eff)
    assert syn[TCP].options[0] == ("MSS", 1460)
    return syn


def replay(h, cl, eff, s_isn, greeting=b"220 mx ESMTP Postfix\r\n"):
    syn = syn_of(h, eff)
    srv = Srv(h, syn, s_isn)
    srv.synack()
    srv.say(greeting)
    assert srv.rcvd == EHLO
    srv.say(b"250-mx\r\n250-PIPELINING\r\n250-SIZE 20000000\r\n250 8BITMIME\r\n")
    assert srv.rcvd == EHLO + MAIL
    return srv


@pytest.mark.parametrize("cisn,s_isn", [(1000, 5), (M - 3, 77), (2**31 - 10, M - 2),
                                        (M - 40, M - 40)])
def test_envelope_replayed_and_spliced(cisn, s_isn):
    h = mail_harness("smtp", RULES, cisn=cisn)
    cl, eff = envelope(h)
    srv = replay(h, cl, eff, s_isn)
    assert srv.syn[IP].dst == S2                           # smtp.to rule: group b
    # the switch's ISN towards the server is the client's: everything was replayed
    assert srv.syn[TCP].seq == cisn
    eff = srv.say(b"250 2.1.0 Sender OK\r\n")
    inst, = of(eff, InstallFlows)
    assert len(inst.flows) == 2                            # nothing owned: both at once
    assert srv.rcvd == EHLO + MAIL + b"RCPT TO:<bob@b.example>\r\n"
    assert [c.state for c in h.eng.by_id.values()] == ["spliced"]
    check_splice(h, cl, srv, inst)


def test_rules_see_the_envelope_and_route_to_a():
    h = mail_harness("smtp", RULES)
    cl, eff = envelope(h, b"RCPT TO:<carol@a.example>\r\n")
    assert syn_of(h, eff)[IP].dst == S1


def test_starttls_and_junk_are_answered_and_not_replayed():
    h = mail_harness("smtp", RULES)
    cl = Client(h)
    cl.connect()
    caps = cl.say(EHLO)
    assert b"STARTTLS" not in caps and b"PIPELINING" not in caps
    assert cl.say(b"STARTTLS\r\n") == b"502 5.5.1 STARTTLS not available\r\n"
    assert cl.say(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
    assert cl.say(b"DATA\r\n") == b"503 5.5.1 Need MAIL command\r\n"
    assert cl.say(b"MAIL FROM:<old@x.example>\r\n") == b"250 2.1.0 OK\r\n"
    assert cl.say(b"RSET\r\n") == b"250 2.0.0 OK\r\n"
    assert cl.say(MAIL) == b"250 2.1.0 OK\r\n"
    skipped = cl.rel - len(EHLO) - len(MAIL)
    eff = cl.send(b"RCPT TO:<bob@b.example>\r\n")
    srv = replay(h, cl, eff, 9999)
    # the server's sequence space skips what it never sees
    assert srv.syn[TCP].seq == (h.cisn + skipped) % M
    inst, = of(srv.say(b"250 OK\r\n"), InstallFlows)
    check_splice(h, cl, srv, inst)


def test_pipelined_commands_are_answered_in_order():
    h = mail_harness("smtp", RULES)
    cl = Client(h)
    cl.connect()
    eff = cl.send(EHLO + MAIL + b"RCPT TO:<bob@b.example>\r\nDATA\r\n")
    assert cl.take(eff).startswith(b"250-www")           # only the first reply
    assert not [p for port, p in pkts(eff) if port == 2]
    eff = h.client(h.cframe("A", rel=cl.rel, ack=cl.ack()))   # client ACKs it
    assert cl.take(eff) == b"250 2.1.0 OK\r\n"
    eff = h.client(h.cframe("A", rel=cl.rel, ack=cl.ack()))
    srv = replay(h, cl, eff, 1)                          # RCPT TO decides
    inst, = of(srv.say(b"250 OK\r\n"), InstallFlows)
    # RCPT TO and the pipelined DATA go to the server as the client sent them
    assert srv.rcvd.endswith(b"RCPT TO:<bob@b.example>\r\nDATA\r\n")
    check_splice(h, cl, srv, inst)


def test_reject_answers_550_and_the_dialogue_goes_on():
    h = mail_harness("smtp", RULES)
    cl = Client(h)
    cl.connect()
    cl.say(EHLO)
    assert cl.say(b"MAIL FROM:<spam@bad.example>\r\n") == b"250 2.1.0 OK\r\n"
    assert cl.say(b"RCPT TO:<bob@b.example>\r\n") == \
        b"550 5.7.1 Recipient rejected by policy\r\n"
    assert cl.say(b"RCPT TO:<old@b.example>\r\n") == \
        b"550 5.7.1 Recipient rejected by policy\r\n"
    assert cl.say(b"RSET\r\n") == b"250 2.0.0 OK\r\n"
    cl.say(b"MAIL FROM:<x@y.example>\r\n")
    assert cl.say(b"RCPT TO:<old@b.example>\r\n") == \
        b"551 5.1.6 User not local; please try <new@b.example>\r\n"
    eff = cl.send(b"RCPT TO:<bob@b.example>\r\n")
    syn = syn_of(h, eff)
    srv = Srv(h, syn, 500)
    srv.synack()
    srv.say(b"220 mx\r\n")
    assert srv.rcvd == EHLO                             # the last EHLO ...
    srv.say(b"250 mx\r\n")
    assert srv.rcvd == EHLO + b"MAIL FROM:<x@y.example>\r\n"   # ... and the open MAIL
    inst, = of(srv.say(b"250 OK\r\n"), InstallFlows)
    assert srv.rcvd.endswith(b"RCPT TO:<bob@b.example>\r\n")
    check_splice(h, cl, srv, inst)


def test_server_refusal_redispatches_then_421():
    rules = 'all: if (match(smtp.to, "@")) { routeTo(web); }'
    h = mail_harness("smtp", rules)
    cl, eff = envelope(h)
    syn = syn_of(h, eff)
    first = syn[IP].dst
    srv = Srv(h, syn, 1)
    srv.synack()
    srv.say(b"220 mx\r\n")
    srv.say(b"250 mx\r\n")
    eff = h.server(srv.frame("PA", b"550 5.7.1 Sender refused\r\n"))
    rst = [p for port, p in pkts(eff) if port == 2 and "R" in p[TCP].flags]
    assert rst and rst[0][IP].dst == first
    syn2 = h.to_server_syn(eff)                       # redispatched to the other server
    assert syn2[IP].dst != first
    srv2 = Srv(h, syn2, 1)
    srv2.synack()
    eff = h.server(srv2.frame("PA", b"554 5.3.2 busy\r\n"))
    got = cl.take(eff)
    assert got == b"421 4.3.0 Service not available, closing transmission channel\r\n"
    fin = [p for port, p in pkts(eff) if port == 1 and "F" in p[TCP].flags]
    assert fin
    assert all(s.active == 0 for s in h.servers)


def test_server_reset_during_replay_redispatches():
    h = mail_harness("smtp", RULES.replace("routeTo(b)", "routeTo(web)"))
    cl, eff = envelope(h)
    syn = syn_of(h, eff)
    srv = Srv(h, syn, 1)
    srv.synack()
    eff = h.server(srv.frame("R"))
    assert h.to_server_syn(eff)[IP].dst != syn[IP].dst


def test_lost_command_and_silent_server_are_retransmitted_then_given_up():
    h = mail_harness("smtp", RULES)
    cl, eff = envelope(h)
    syn = syn_of(h, eff)
    srv = Srv(h, syn, 1)
    srv.synack()
    srv.say(b"220 mx\r\n")                      # EHLO sent; the server never answers
    sent = []
    for _ in range(h.cfg.relay_retries):
        h.now += 0.2 * 2 ** h.cfg.relay_retries
        sent += [payload(p) for port, p in pkts(h.tick(0)) if port == 2]
    assert sent and all(s == EHLO for s in sent)
    h.now += 100
    eff = h.tick(0)
    assert [p for port, p in pkts(eff) if port == 2 and "R" in p[TCP].flags]
    assert b"421" in cl.take(eff)                # group b has one server: no redispatch


def test_quit_closes_with_221():
    h = mail_harness("smtp", RULES)
    cl = Client(h)
    cl.connect()
    eff = cl.send(b"QUIT\r\n")
    assert cl.take(eff) == b"221 2.0.0 Bye\r\n"
    assert [p for port, p in pkts(eff) if "F" in p[TCP].flags]


def test_greeting_is_retransmitted_then_timeout_421():
    h = mail_harness("smtp", RULES)
    h.handshake()
    eff = h.client(h.cframe("A"))
    assert payload(pkts(eff)[0][1]) == b"220 www ESMTP\r\n"
    eff = h.tick(0.25)
    assert payload(pkts(eff)[0][1]) == b"220 www ESMTP\r\n"   # not acknowledged: again
    h.now += h.cfg.request_timeout
    eff = h.tick(0)
    p = pkts(eff)[0][1]
    assert payload(p) == (b"220 www ESMTP\r\n421 4.4.2 Timeout, closing transmission "
                          b"channel\r\n")
    assert p[TCP].seq == (h.sisn + 1) % M and "F" in p[TCP].flags
    assert h.eng.stats.limit_timeout == 1


def test_bad_commands_and_long_line():
    h = mail_harness("smtp", RULES)
    cl = Client(h)
    cl.connect()
    assert cl.say(b"MAIL FROM:<a@b>\r\n") == b"503 5.5.1 Send HELO/EHLO first\r\n"
    assert cl.say(b"HELO\r\n") == b"501 5.5.4 Syntax: HELO hostname\r\n"
    assert cl.say(b"HELO c\r\n") == b"250 www\r\n"
    assert cl.say(b"RCPT TO:<a@b>\r\n") == b"503 5.5.1 Need MAIL command\r\n"
    assert cl.say(b"MAIL FROM:<a@b> SMTPUTF8\r\n") == \
        b"555 5.5.4 Unsupported MAIL parameter\r\n"
    assert cl.say(b"MAIL FROM:<a@b> SIZE=99999999999\r\n").startswith(b"552 ")
    assert cl.say(b"AUTH PLAIN\r\n").startswith(b"502 ")
    assert cl.say(b"FOO\r\n").startswith(b"500 ")
    eff = cl.send(b"X" * 1200)
    assert cl.take(eff).startswith(b"421 4.7.0 Line too long")


def test_client_reset_during_replay_resets_the_server():
    h = mail_harness("smtp", RULES)
    cl, eff = envelope(h)
    srv = Srv(h, syn_of(h, eff), 1)
    srv.synack()
    eff = h.client(h.cframe("R", rel=cl.rel))
    assert [p for port, p in pkts(eff) if port == 2 and "R" in p[TCP].flags]
    assert not h.eng.by_id


def test_teardown_after_splice():
    h = mail_harness("smtp", RULES, mode="snat")
    cl, eff = envelope(h)
    srv = replay(h, cl, eff, 42)
    assert of(srv.say(b"250 OK\r\n"), InstallFlows)
    h.client(h.cframe("FA", rel=cl.rel, ack=cl.ack()), reason=4)
    eff = h.server(srv.frame("FA"), reason=4)
    assert of(eff, RemoveFlows)
