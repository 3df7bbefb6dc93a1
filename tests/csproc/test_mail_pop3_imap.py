"""POP3 and IMAP services: the switch greets, answers CAPA/CAPABILITY, decides on USER,
LOGIN or AUTHENTICATE PLAIN, absorbs the server's greeting, replays and splices."""

import base64

import pytest
from scapy.layers.inet import IP, TCP

from p4cs.csproc import InstallFlows

from mail_harness import M, Client, Srv, check_splice, mail_harness
from cs_harness import S1, S2, of, pkts

POP3_RULES = '''
deny:  if (pop3.user == "mallory") { reject; }
alice: if (pop3.user == "alice") { routeTo(a); }
bob:   if (pop3.user == "bob") { routeTo(b); }
'''

IMAP_RULES = '''
deny:  if (imap.user == "mallory") { reject; }
moved: if (imap.user == "old") { redirect("imap://b.example/"); }
alice: if (imap.user == "alice") { routeTo(a); }
bob:   if (imap.user == "bob") { routeTo(b); }
'''


def to_splice(h, cl, eff, greeting, s_isn=77):
    syn = h.to_server_syn(eff)
    srv = Srv(h, syn, s_isn)
    srv.synack()
    eff = srv.say(greeting)
    return syn, srv, eff


@pytest.mark.parametrize("cisn", [1000, M - 5])
def test_pop3_user_routes_and_splices(cisn):
    h = mail_harness("pop3", POP3_RULES, cisn=cisn)
    cl = Client(h)
    assert cl.connect() == b"+OK www POP3 ready\r\n"
    assert cl.say(b"CAPA\r\n") == b"+OK Capability list follows\r\nUSER\r\n.\r\n"
    assert cl.say(b"STLS\r\n") == b"-ERR STLS not available\r\n"
    assert cl.say(b"PASS x\r\n") == b"-ERR use USER first\r\n"
    eff = cl.send(b"USER bob\r\n")
    assert cl.take(eff) == b""
    syn, srv, eff = to_splice(h, cl, eff, b"+OK s2 POP3 server <1.2@s2>\r\n")
    assert syn[IP].dst == S2
    assert syn[TCP].seq == (cisn + len(b"CAPA\r\nSTLS\r\nPASS x\r\n")) % M   # skipped
    inst, = of(eff, InstallFlows)
    assert srv.rcvd == b"USER bob\r\n"                    # the server answers USER itself
    check_splice(h, cl, srv, inst)


def test_pop3_refusals():
    h = mail_harness("pop3", POP3_RULES)
    cl = Client(h)
    cl.connect()
    assert cl.say(b"USER mallory\r\n") == b"-ERR [AUTH] access denied\r\n"
    assert cl.say(b"USER\r\n") == b"-ERR missing user name\r\n"
    assert cl.say(b"STAT\r\n") == b"-ERR not authenticated\r\n"
    eff = cl.send(b"USER alice\r\n")
    syn, srv, eff = to_splice(h, cl, eff, b"-ERR go away\r\n")
    assert syn[IP].dst == S1
    assert [p for port, p in pkts(eff) if port == 2 and "R" in p[TCP].flags]
    assert cl.take(eff) == b"-ERR [SYS/TEMP] service not available\r\n"


def test_pop3_quit():
    h = mail_harness("pop3", POP3_RULES)
    cl = Client(h)
    cl.connect()
    eff = cl.send(b"QUIT\r\n")
    assert cl.take(eff) == b"+OK bye\r\n"
    assert [p for port, p in pkts(eff) if "F" in p[TCP].flags]


@pytest.mark.parametrize("cisn,s_isn", [(1000, 5), (M - 20, M - 3)])
def test_imap_login_routes_and_splices(cisn, s_isn):
    h = mail_harness("imap", IMAP_RULES, cisn=cisn)
    cl = Client(h)
    assert cl.connect() == b"* OK www IMAP4rev1 ready\r\n"
    assert cl.say(b"a1 CAPABILITY\r\n") == \
        b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na1 OK CAPABILITY completed\r\n"
    assert cl.say(b"a2 STARTTLS\r\n") == b"a2 BAD STARTTLS not available\r\n"
    assert cl.say(b"a3 SELECT INBOX\r\n").startswith(b"a3 BAD ")
    eff = cl.send(b'a4 LOGIN alice "secret"\r\n')
    syn, srv, eff = to_splice(h, cl, eff, b"* OK [CAPABILITY IMAP4rev1] s1 ready\r\n", s_isn)
    assert syn[IP].dst == S1
    inst, = of(eff, InstallFlows)
    assert srv.rcvd == b'a4 LOGIN alice "secret"\r\n'
    check_splice(h, cl, srv, inst)


def test_imap_login_with_literals_is_replayed_step_by_step():
    h = mail_harness("imap", IMAP_RULES)
    cl = Client(h)
    cl.connect()
    assert cl.say(b"a1 LOGIN {3}\r\n") == b"+ Ready for literal data\r\n"
    assert cl.say(b"bob {6}\r\n") == b"+ Ready for literal data\r\n"
    eff = cl.send(b"s cret\r\n")
    syn, srv, eff = to_splice(h, cl, eff, b"* OK s2 ready\r\n")
    assert syn[IP].dst == S2                                # the literal user decided
    assert syn[TCP].seq == h.cisn                           # nothing skipped
    assert srv.rcvd == b"a1 LOGIN {3}\r\n"
    srv.say(b"+ go ahead\r\n")
    assert srv.rcvd == b"a1 LOGIN {3}\r\nbob {6}\r\n"
    eff = srv.say(b"+ go ahead\r\n")
    inst, = of(eff, InstallFlows)
    assert srv.rcvd == b"a1 LOGIN {3}\r\nbob {6}\r\ns cret\r\n"
    check_splice(h, cl, srv, inst)


def test_imap_authenticate_plain():
    h = mail_harness("imap", IMAP_RULES)
    cl = Client(h)
    cl.connect()
    assert cl.say(b"a1 AUTHENTICATE CRAM-MD5\r\n") == \
        b"a1 NO unsupported authentication mechanism\r\n"
    assert cl.say(b"a2 AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    resp = base64.b64encode(b"\0bob\0pw") + b"\r\n"
    eff = cl.send(resp)
    syn, srv, eff = to_splice(h, cl, eff, b"* OK ready\r\n")
    assert syn[IP].dst == S2
    assert syn[TCP].seq == (h.cisn + len(b"a1 AUTHENTICATE CRAM-MD5\r\n")) % M
    assert srv.rcvd == b"a2 AUTHENTICATE PLAIN\r\n"
    eff = srv.say(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n+ \r\n")  # untagged data absorbed
    inst, = of(eff, InstallFlows)
    assert srv.rcvd.endswith(resp)
    check_splice(h, cl, srv, inst)


def test_imap_refusals_and_logout():
    h = mail_harness("imap", IMAP_RULES)
    cl = Client(h)
    cl.connect()
    assert cl.say(b"a1 LOGIN mallory x\r\n") == \
        b"a1 NO [AUTHORIZATIONFAILED] access denied\r\n"
    assert cl.say(b"a2 LOGIN old x\r\n") == \
        b"a2 NO [REFERRAL imap://b.example/] try another server\r\n"
    assert cl.say(b"a3 AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    assert cl.say(b"*\r\n") == b"a3 BAD AUTHENTICATE cancelled\r\n"
    assert cl.say(b"\r\n") == b"* BAD invalid command\r\n"
    eff = cl.send(b"a4 LOGOUT\r\n")
    assert cl.take(eff) == b"* BYE www logging out\r\na4 OK LOGOUT completed\r\n"
    assert [p for port, p in pkts(eff) if "F" in p[TCP].flags]


def test_imap_server_greeting_bye_is_a_failure():
    h = mail_harness("imap", IMAP_RULES)
    cl = Client(h)
    cl.connect()
    eff = cl.send(b"a1 LOGIN alice x\r\n")
    syn, srv, eff = to_splice(h, cl, eff, b"* BYE too busy\r\n")
    assert cl.take(eff) == b"* BYE service not available\r\n"
