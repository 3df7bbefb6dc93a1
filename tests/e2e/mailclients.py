"""Mail clients for the end-to-end tests, run inside the client namespace:

    ip netns exec <client-ns> python tests/e2e/mailclients.py smtp|pop3|imap --vip VIP ...

Python's smtplib, poplib and imaplib, as a user would run them.  Each prints one JSON
object (sha256 of what it sent or retrieved, the replies that name the server) and exits 0
whenever it could report.
"""

from __future__ import annotations

import argparse
import hashlib
import imaplib
import json
import poplib
import smtplib


def message(sender: str, rcpts: list[str], size: int, seed: int) -> bytes:
    """A message of about ``size`` bytes, CRLF lines, some starting with a dot."""
    head = (f"From: <{sender}>\r\nTo: {', '.join(f'<{r}>' for r in rcpts)}\r\n"
            f"Subject: p4cs test {seed}\r\nMessage-ID: <{seed}@p4cs.test>\r\n\r\n").encode()
    lines, n, k = [], len(head), 0
    while n < size:
        body = bytes(33 + (seed + k * 7 + j) % 94 for j in range(70))
        line = (b"." if k % 5 == 0 else b"") + body + b"\r\n"
        lines.append(line)
        n += len(line)
        k += 1
    return head + b"".join(lines)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def smtp(a) -> dict:
    msg = message(a.sender, a.to, a.size, a.seed)
    out = {"sha256": sha(msg), "length": len(msg)}
    try:
        with smtplib.SMTP(a.vip, a.port, timeout=30) as s:
            out["ehlo"] = list(s.ehlo("client.p4cs.test"))[1].decode()
            out["features"] = sorted(s.esmtp_features)
            refused = s.sendmail(a.sender, a.to, msg)
            out["refused"] = {k: [v[0], v[1].decode()] for k, v in refused.items()}
            out["ok"] = True
    except smtplib.SMTPRecipientsRefused as e:
        out["ok"] = False
        out["refused"] = {k: [v[0], v[1].decode()] for k, v in e.recipients.items()}
    except (smtplib.SMTPException, OSError) as e:
        out["ok"] = False
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def pop3(a) -> dict:
    out: dict = {}
    try:
        p = poplib.POP3(a.vip, a.port, timeout=30)
        out["greeting"] = p.getwelcome().decode()
        out["user"] = p.user(a.user).decode()
        p.pass_("secret")
        n, _ = p.stat()
        msgs = []
        for i in range(1, n + 1):
            _, lines, _ = p.retr(i)
            msgs.append(sha(b"\r\n".join(lines) + b"\r\n"))
        out["sha256"] = msgs
        p.quit()
        out["ok"] = True
    except (poplib.error_proto, OSError) as e:
        out["ok"] = False
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def imap(a) -> dict:
    out: dict = {}
    try:
        m = imaplib.IMAP4(a.vip, a.port, timeout=30)
        out["greeting"] = m.welcome.decode()
        if a.auth == "plain":
            typ, dat = m.authenticate("PLAIN", lambda _: f"\0{a.user}\0secret".encode())
        else:
            typ, dat = m.login(a.user, "secret")
        out["login"] = dat[0].decode()
        typ, dat = m.select("INBOX")
        msgs = []
        for i in range(1, int(dat[0]) + 1):
            typ, dat = m.fetch(str(i), "(RFC822)")
            msgs.append(sha(dat[0][1]))
        out["sha256"] = msgs
        m.logout()
        out["ok"] = True
    except (imaplib.IMAP4.error, OSError) as e:
        out["ok"] = False
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["smtp", "pop3", "imap"])
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int)
    ap.add_argument("--from", dest="sender", default="alice@corp.example")
    ap.add_argument("--to", action="append", default=[])
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--user", default="alice")
    ap.add_argument("--auth", choices=["login", "plain"], default="login")
    a = ap.parse_args()
    a.port = a.port or {"smtp": 25, "pop3": 110, "imap": 143}[a.cmd]
    print(json.dumps({"smtp": smtp, "pop3": pop3, "imap": imap}[a.cmd](a)))


if __name__ == "__main__":
    main()
