import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading

from conftest import DATA, ROOT
from p4cs.rules import RequestView, load_rules
from p4cs.rules.store import RuleStore, install_sighup


def test_reload_swaps_and_invalid_keeps_old(tmp_path):
    f = tmp_path / "r.rules"
    f.write_text('a: if (prefix(path, "/a")) routeTo(one);')
    store = RuleStore.from_file(f)
    old = store.current
    req = b"GET /a HTTP/1.1\r\n\r\n"
    assert store.classify(req).target == "one"
    f.write_text('a: if (prefix(path, "/a")) routeTo(two);')
    assert store.reload(f) == []
    assert store.current is not old and store.classify(req).target == "two"
    assert store.generation == 1
    cur = store.current
    f.write_text('a: if (prefix(path "/a")) routeTo(three);')
    errs = store.reload(f)
    assert len(errs) == 1 and "r.rules:1:" in errs[0] and "^" in errs[0]
    assert store.current is cur and store.classify(req).target == "two"
    assert store.reload(tmp_path / "missing.rules")[0].endswith("No such file or directory")
    assert store.current is cur


def test_readers_see_old_or_new_never_a_mix(tmp_path):
    a, b = tmp_path / "a.rules", tmp_path / "b.rules"
    a.write_text("\n".join(f'x{i}: if (host == "h{i}") routeTo(A);' for i in range(200)) + "\nd: routeTo(A);")
    b.write_text("\n".join(f'y{i}: if (host == "h{i}") routeTo(B);' for i in range(200)) + "\nd: routeTo(B);")
    store = RuleStore.from_file(a)
    stop = threading.Event()
    bad = []

    def reader():
        while not stop.is_set():
            rs = store.current
            d1 = rs.decide(RequestView.from_fields({"host": "h7"}))
            d2 = rs.decide(RequestView.from_fields({"host": "zz"}))
            if d1.target != d2.target:
                bad.append((d1, d2))

    ts = [threading.Thread(target=reader) for _ in range(2)]
    for t in ts:
        t.start()
    for k in range(6):
        assert store.reload(b if k % 2 == 0 else a) == []
    stop.set()
    for t in ts:
        t.join()
    assert not bad


def test_sighup_reloads_inside_the_loop(tmp_path):
    f = tmp_path / "r.rules"
    f.write_text("a: routeTo(one);")
    store = RuleStore.from_file(f)

    async def main():
        remove = install_sighup(store, f)
        f.write_text("a: routeTo(two);")
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if store.generation:
                break
        f.write_text("a: routeTo(")  # invalid: kept
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.05)
        remove()

    asyncio.run(main())
    assert store.generation == 1 and store.current.rules[0].body[0].target == "two"


class FakeController:
    """The controller side of the control socket, as docs/interfaces.md describes it."""

    def __init__(self, path, store):
        self.path, self.store = str(path), store
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen()
        self.requests = []
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with c:
                line = c.makefile("rb").readline()
                msg = json.loads(line)
                self.requests.append(msg)
                errs = self.store.reload(msg["path"])
                c.sendall((json.dumps({"ok": True} if not errs else {"ok": False, "errors": errs}) + "\n").encode())

    def close(self):
        self.srv.close()


def cli(*args, env_extra=None):
    env = {"PYTHONPATH": str(ROOT / "host"), "PATH": "/usr/bin:/bin", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "p4cs.cli", "rules", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60)


def test_cli_load_over_control_socket(tmp_path):
    f = tmp_path / "r.rules"
    f.write_text("a: routeTo(one);")
    store = RuleStore.from_file(f)
    sock = tmp_path / "ctl.sock"
    srv = FakeController(sock, store)
    try:
        g = tmp_path / "new.rules"
        g.write_text("a: routeTo(two);")
        r = cli("load", str(g), "--socket", str(sock))
        assert r.returncode == 0, r.stderr
        assert srv.requests[-1] == {"op": "rules.load", "path": str(g.resolve())}
        assert store.current.rules[0].body[0].target == "two"
        # env var names the socket
        g.write_text("a: routeTo(three);")
        r = cli("load", str(g), env_extra={"P4CS_CONTROL_SOCKET": str(sock)})
        assert r.returncode == 0 and store.current.rules[0].body[0].target == "three"
        # invalid file: rejected locally with its errors, controller not asked
        n = len(srv.requests)
        (tmp_path / "bad.rules").write_text("a: if (url = 1) reject;")
        r = cli("load", str(tmp_path / "bad.rules"), "--socket", str(sock))
        assert r.returncode == 1 and "bad.rules:1:12" in r.stderr and len(srv.requests) == n
    finally:
        srv.close()


def test_cli_load_controller_rejects_and_unreachable(tmp_path):
    f = tmp_path / "r.rules"
    f.write_text("a: routeTo(one);")
    sock = tmp_path / "ctl.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock))
    srv.listen()

    def serve():
        c, _ = srv.accept()
        with c:
            c.makefile("rb").readline()
            c.sendall(b'{"ok": false, "errors": ["group one is not configured"]}\n')

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    r = cli("load", str(f), "--socket", str(sock))
    srv.close()
    assert r.returncode == 1 and "group one is not configured" in r.stderr
    r = cli("load", str(f), "--socket", str(tmp_path / "nobody.sock"))
    assert r.returncode == 2 and "cannot reach the controller" in r.stderr and "Traceback" not in r.stderr
