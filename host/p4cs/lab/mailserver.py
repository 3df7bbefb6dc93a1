"""Small mail servers for the lab and the end-to-end tests (python -m p4cs.lab.mailserver).

One process serves one spool directory: ``<spool>/<user>/<n>.eml`` is message ``n`` of
mailbox ``user``.

* SMTP (aiosmtpd, test dependency): every accepted message is stored, byte for byte as
  received (dot-unstuffed, CRLF line ends), in the mailbox of each recipient's local part.
* POP3 (RFC 1939): USER/PASS (any non-empty password), STAT, LIST, UIDL, RETR, DELE
  (deletes at QUIT), NOOP, RSET, CAPA, QUIT.
* IMAP4rev1 (RFC 3501), an INBOX without flags or expunge: CAPABILITY, NOOP, LOGIN,
  AUTHENTICATE PLAIN, SELECT/EXAMINE INBOX, FETCH n (RFC822 | BODY[] | BODY.PEEK[] |
  RFC822.SIZE), LOGOUT.
  Literals from the client are accepted with a continuation request.

Greetings and replies name the server (``--name``), so a client can tell which server it
reached.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
from pathlib import Path

MAX_LINE = 8192


class Spool:
    def __init__(self, root: Path):
        self.root = root

    def deliver(self, user: str, data: bytes) -> Path:
        box = self.root / user
        box.mkdir(parents=True, exist_ok=True)
        n = len(list(box.glob("*.eml"))) + 1
        path = box / f"{n}.eml"
        path.write_bytes(data)
        return path

    def messages(self, user: str) -> list[Path]:
        box = self.root / user
        if not box.is_dir():
            return []
        return sorted(box.glob("*.eml"), key=lambda p: int(p.stem))


# ------------------------------------------------------------------------------ SMTP
class SmtpHandler:
    def __init__(self, spool: Spool):
        self.spool = spool

    async def handle_DATA(self, server, session, envelope) -> str:
        for rcpt in envelope.rcpt_tos:
            self.spool.deliver(rcpt.partition("@")[0].lower(), envelope.original_content)
        return "250 2.0.0 OK: queued"


async def start_smtp(spool: Spool, name: str, host: str, port: int):
    from aiosmtpd.smtp import SMTP
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(SmtpHandler(spool), hostname=name,
                                                 ident=f"{name} lab ESMTP"), host, port)


# ------------------------------------------------------------------------------ POP3
async def pop3_session(spool: Spool, name: str, reader, writer) -> None:
    async def send(text: str | bytes) -> None:
        writer.write(text.encode() if isinstance(text, str) else text)
        await writer.drain()

    user = None
    msgs: list[Path] | None = None
    deleted: set[int] = set()
    await send(f"+OK {name} POP3 lab server\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd, _, arg = line.decode("latin-1").rstrip("\r\n").partition(" ")
            cmd = cmd.upper()
            if cmd == "QUIT":
                for i in deleted:
                    msgs[i - 1].unlink(missing_ok=True)
                await send(f"+OK {name} bye\r\n")
                return
            if cmd == "CAPA":
                await send("+OK\r\nUSER\r\nUIDL\r\n.\r\n")
            elif msgs is None:
                if cmd == "USER" and arg:
                    user = arg.strip().lower()
                    await send(f"+OK {name} knows {user}\r\n")
                elif cmd == "PASS" and user and arg:
                    msgs = spool.messages(user)
                    await send(f"+OK {user} has {len(msgs)} messages\r\n")
                else:
                    await send("-ERR authenticate first\r\n")
            elif cmd == "STAT":
                live = [m for i, m in enumerate(msgs, 1) if i not in deleted]
                await send(f"+OK {len(live)} {sum(m.stat().st_size for m in live)}\r\n")
            elif cmd in ("LIST", "UIDL"):
                rows = [(i, m) for i, m in enumerate(msgs, 1) if i not in deleted]
                val = (lambda m: m.stat().st_size) if cmd == "LIST" else (lambda m: m.stem)
                if arg:
                    found = [r for r in rows if str(r[0]) == arg.strip()]
                    await send(f"+OK {arg.strip()} {val(found[0][1])}\r\n" if found
                               else "-ERR no such message\r\n")
                else:
                    await send("+OK\r\n" + "".join(f"{i} {val(m)}\r\n" for i, m in rows)
                               + ".\r\n")
            elif cmd in ("RETR", "DELE"):
                i = int(arg) if arg.strip().isdigit() else 0
                if not 1 <= i <= len(msgs) or i in deleted:
                    await send("-ERR no such message\r\n")
                elif cmd == "DELE":
                    deleted.add(i)
                    await send("+OK deleted\r\n")
                else:
                    data = msgs[i - 1].read_bytes()
                    lines = data.split(b"\r\n")
                    if lines and lines[-1] == b"":
                        lines.pop()
                    body = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n"
                                    for ln in lines)
                    await send(f"+OK {len(data)} octets\r\n".encode() + body + b".\r\n")
            elif cmd == "NOOP":
                await send("+OK\r\n")
            elif cmd == "RSET":
                deleted.clear()
                await send("+OK\r\n")
            else:
                await send("-ERR unknown command\r\n")
    finally:
        writer.close()


# ------------------------------------------------------------------------------ IMAP
_LIT = re.compile(rb"\{(\d+)\}\r?\n$")


async def imap_command(reader, writer) -> bytes | None:
    """One command line with its literals inlined as ``{n}\\r\\n<bytes>``."""
    line = await reader.readline()
    if not line:
        return None
    out = line
    while True:
        m = _LIT.search(line)
        if not m:
            return out
        writer.write(b"+ go ahead\r\n")
        await writer.drain()
        out += await reader.readexactly(int(m.group(1)))
        line = await reader.readline()
        out += line


def imap_args(data: bytes) -> list[bytes]:
    """Atoms, quoted strings and literals of a command's arguments."""
    args, i = [], 0
    while i < len(data):
        c = data[i:i + 1]
        if c in (b" ", b"\r", b"\n"):
            i += 1
        elif c == b'"':
            j, val = i + 1, bytearray()
            while j < len(data) and data[j:j + 1] != b'"':
                if data[j:j + 1] == b"\\":
                    j += 1
                val += data[j:j + 1]
                j += 1
            args.append(bytes(val))
            i = j + 1
        elif c == b"{":
            close = data.index(b"}", i)
            n = int(data[i + 1:close])
            start = data.index(b"\n", close) + 1
            args.append(data[start:start + n])
            i = start + n
        else:
            j = i
            while j < len(data) and data[j:j + 1] not in (b" ", b"\r", b"\n"):
                j += 1
            args.append(data[i:j])
            i = j
    return args


async def imap_session(spool: Spool, name: str, reader, writer) -> None:
    async def send(data: bytes | str) -> None:
        writer.write(data.encode() if isinstance(data, str) else data)
        await writer.drain()

    user = None
    msgs: list[Path] | None = None
    await send(f"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] {name} IMAP lab server\r\n")
    try:
        while True:
            data = await imap_command(reader, writer)
            if data is None:
                return
            tag, _, rest = data.partition(b" ")
            cmd, _, argdata = rest.partition(b" ")
            t = tag.decode("latin-1")
            cmd = cmd.strip().upper()
            args = imap_args(argdata)
            if cmd == b"CAPABILITY":
                await send(f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{t} OK done\r\n")
            elif cmd == b"NOOP":
                await send(f"{t} OK done\r\n")
            elif cmd == b"LOGOUT":
                await send(f"* BYE {name} bye\r\n{t} OK done\r\n")
                return
            elif cmd == b"LOGIN" and len(args) == 2:
                user = args[0].decode("latin-1").lower()
                await send(f"{t} OK [CAPABILITY IMAP4rev1] {name} logged in {user}\r\n")
            elif cmd == b"AUTHENTICATE" and args[:1] and args[0].upper() == b"PLAIN":
                resp = args[1] if len(args) > 1 else None
                if resp is None:
                    await send("+ \r\n")
                    resp = (await reader.readline()).strip()
                try:
                    parts = base64.b64decode(resp, validate=True).split(b"\0")
                    user = parts[1].decode("utf-8").lower()
                    await send(f"{t} OK {name} authenticated {user}\r\n")
                except (ValueError, IndexError, UnicodeDecodeError):
                    await send(f"{t} NO bad response\r\n")
            elif user is None:
                await send(f"{t} BAD log in first\r\n")
            elif cmd in (b"SELECT", b"EXAMINE") and args and args[0].upper() == b"INBOX":
                msgs = spool.messages(user)
                mode = "READ-WRITE" if cmd == b"SELECT" else "READ-ONLY"
                await send(f"* {len(msgs)} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] ok\r\n"
                           f"* FLAGS (\\Seen)\r\n{t} OK [{mode}] {cmd.decode()} done\r\n")
            elif cmd == b"FETCH" and msgs is not None and len(args) >= 2:
                n = int(args[0]) if args[0].isdigit() else 0
                item = b" ".join(args[1:]).strip(b"()").upper()
                if not 1 <= n <= len(msgs):
                    await send(f"{t} NO no such message\r\n")
                    continue
                body = msgs[n - 1].read_bytes()
                if item == b"RFC822.SIZE":
                    await send(f"* {n} FETCH (RFC822.SIZE {len(body)})\r\n{t} OK done\r\n")
                    continue
                key = b"RFC822" if item == b"RFC822" else b"BODY[]"
                await send(f"* {n} FETCH (".encode() + key + f" {{{len(body)}}}\r\n".encode()
                           + body + f")\r\n{t} OK done\r\n".encode())
            else:
                await send(f"{t} BAD unknown command\r\n")
    finally:
        writer.close()


async def serve(args) -> None:
    spool = Spool(Path(args.spool))
    servers = []
    if args.smtp:
        servers.append(await start_smtp(spool, args.name, args.bind, args.smtp))
    if args.pop3:
        servers.append(await asyncio.start_server(
            lambda r, w: pop3_session(spool, args.name, r, w), args.bind, args.pop3,
            limit=MAX_LINE))
    if args.imap:
        servers.append(await asyncio.start_server(
            lambda r, w: imap_session(spool, args.name, r, w), args.bind, args.imap,
            limit=MAX_LINE))
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--name", default="lab")
    ap.add_argument("--spool", required=True, help="directory of the mailboxes")
    ap.add_argument("--smtp", type=int, default=25, help="SMTP port (0: none)")
    ap.add_argument("--pop3", type=int, default=110, help="POP3 port (0: none)")
    ap.add_argument("--imap", type=int, default=143, help="IMAP port (0: none)")
    args = ap.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    except ImportError as e:
        raise SystemExit(f"mailserver: {e} (pip install aiosmtpd, or --smtp 0)")


if __name__ == "__main__":
    main()
