"""Mail services through the switch: the switch greets the client itself, decides on the
envelope (smtp.to, smtp.from) or the user (pop3.user, imap.user), replays the client's
commands to the chosen server and splices.  Real servers (aiosmtpd and the lab's POP3 and
IMAP servers), real clients (smtplib, poplib, imaplib); messages are checked byte for byte
(sha256) where they land and where they are read."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

pytest.importorskip("aiosmtpd")

CLIENTS = Path(__file__).resolve().parent / "mailclients.py"

SMTP_RULES = """\
spam: if (smtp.from == "spam@bad.example") { reject; }
boss: if (smtp.from == "boss@corp.example") { routeTo(www_smtp); }
to_a: if (suffix(smtp.to, "@a.example")) { routeTo(ace_smtp); }
to_b: if (suffix(smtp.to, "@b.example")) { routeTo(wait_smtp); }
"""
POP3_RULES = """\
alice: if (pop3.user == "alice") { routeTo(ace_pop3); }
bob:   if (pop3.user == "bob") { routeTo(wait_pop3); }
"""
IMAP_RULES = """\
deny:  if (imap.user == "mallory") { reject; }
alice: if (imap.user == "alice") { routeTo(ace_imap); }
bob:   if (imap.user == "bob") { routeTo(wait_imap); }
"""


def mail_groups(names) -> dict:
    groups = {}
    for proto, port in (("smtp", 25), ("pop3", 110), ("imap", 143)):
        for n, ip in names:
            groups[f"{n}_{proto}"] = {"scheduler": "rr", "servers": [{"address": ip, "port": port}]}
    return groups


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("mail")
    services = []
    for proto, port, rules in (("smtp", 25, SMTP_RULES), ("pop3", 110, POP3_RULES),
                               ("imap", 143, IMAP_RULES)):
        (d / f"{proto}.rules").write_text(rules)
        services.append({"name": f"{proto}.p4cs.test", "port": port, "protocol": proto,
                         "rules": str(d / f"{proto}.rules")})
    ips = [("ace", "10.0.2.1"), ("wait", "10.0.2.2"), ("www", "10.0.2.3")]
    lab = make_lab("m", services=services, groups=mail_groups(ips), mail=True)
    assert [h.ip for h in lab.servers] == [ip for _, ip in ips]
    return lab


def client(lab, cmd: str, *args: str) -> dict:
    r = lab.client_exec([sys.executable, str(CLIENTS), cmd, "--vip", lab.vip, *args],
                        timeout=120)
    assert r.returncode == 0, f"{cmd} {args} failed ({r.returncode}): {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def delivered(lab, server: str, user: str) -> list[str]:
    box = lab.mail_spool(server) / user
    return [hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(box.glob("*.eml"), key=lambda p: int(p.stem))]


def test_smtp_routed_by_recipient_and_sender_byte_exact(lab):
    a = client(lab, "smtp", "--to", "carol@a.example", "--size", "300000", "--seed", "1")
    assert a["ok"], a
    assert a["ehlo"].startswith("smtp.p4cs.test") and a["features"] == ["8bitmime", "size"]
    b = client(lab, "smtp", "--to", "dave@b.example", "--size", "5000", "--seed", "2")
    assert b["ok"], b
    c = client(lab, "smtp", "--from", "boss@corp.example", "--to", "erin@a.example",
               "--seed", "3")
    assert c["ok"], c
    assert delivered(lab, "ace", "carol") == [a["sha256"]]
    assert delivered(lab, "wait", "dave") == [b["sha256"]]
    assert delivered(lab, "www", "erin") == [c["sha256"]]      # smtp.from rule first
    assert delivered(lab, "ace", "erin") == []


def test_smtp_rejected_sender_gets_550(lab):
    r = client(lab, "smtp", "--from", "spam@bad.example", "--to", "carol@a.example")
    assert not r["ok"]
    assert r["refused"]["carol@a.example"][0] == 550
    # the switch still serves the next client
    ok = client(lab, "smtp", "--to", "frank@b.example", "--seed", "4")
    assert ok["ok"] and delivered(lab, "wait", "frank") == [ok["sha256"]]


def put(lab, server: str, user: str, data: bytes) -> str:
    box = lab.mail_spool(server) / user
    box.mkdir(parents=True, exist_ok=True)
    (box / f"{len(list(box.glob('*.eml'))) + 1}.eml").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def mailbox_message(tag: str, size: int) -> bytes:
    lines = [f"Subject: {tag}".encode(), b""]
    lines += [(b"." if k % 3 == 0 else b"") + f"{tag} line {k} ".encode() * 4
              for k in range(size // 60)]
    return b"\r\n".join(lines) + b"\r\n"


@pytest.fixture(scope="module")
def mailboxes(lab):
    """For each user, the message on the server the rules pick, and a decoy on another."""
    return {user: (put(lab, right, user, mailbox_message(f"{user}@{right}", 200_000)),
                   put(lab, wrong, user, mailbox_message(f"{user}@{wrong}", 1_000)))
            for user, right, wrong in (("alice", "ace", "wait"), ("bob", "wait", "www"))}


def test_pop3_routed_by_user_byte_exact(lab, mailboxes):
    r = client(lab, "pop3", "--user", "alice")
    assert r["ok"], r
    assert r["greeting"].startswith("+OK pop3.p4cs.test")   # the switch greets
    assert "ace" in r["user"]                                # the server answers USER
    assert r["sha256"] == [mailboxes["alice"][0]]
    assert mailboxes["alice"][0] in r["sha256"] and mailboxes["alice"][1] not in r["sha256"]
    r = client(lab, "pop3", "--user", "bob")
    assert r["ok"] and "wait" in r["user"], r
    assert mailboxes["bob"][0] in r["sha256"] and mailboxes["bob"][1] not in r["sha256"]


@pytest.mark.parametrize("auth", ["login", "plain"])
def test_imap_routed_by_user_byte_exact(lab, mailboxes, auth):
    r = client(lab, "imap", "--user", "alice", "--auth", auth)
    assert r["ok"], r
    assert r["greeting"].startswith("* OK imap.p4cs.test")
    assert "ace" in r["login"]
    assert mailboxes["alice"][0] in r["sha256"] and mailboxes["alice"][1] not in r["sha256"]
    r = client(lab, "imap", "--user", "bob", "--auth", auth)
    assert r["ok"] and "wait" in r["login"], r
    assert mailboxes["bob"][0] in r["sha256"] and mailboxes["bob"][1] not in r["sha256"]


def test_imap_rejected_user(lab):
    r = client(lab, "imap", "--user", "mallory")
    assert not r["ok"] and "AUTHORIZATIONFAILED" in r["error"], r
