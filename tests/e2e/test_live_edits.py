"""Live edits of a running controller (the ipvsadm verbs through the control socket): a
server added under a request loop gets traffic with no failed request, weight 0 drains,
delete with reset ends its spliced download, a service added answers and a deleted one
stops, and save -> restore -> save is the identity."""

from __future__ import annotations

import threading

import pytest

from e2e_util import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab(make_lab):
    from p4cs.lab.netns import content_switch_topology

    ips = [h.ip for h in content_switch_topology("e2eaddr").servers()]
    groups = {"all": {"scheduler": "rr", "servers": [{"address": ips[0], "port": 80}]}}
    services = [{"name": "web", "port": 80, "default_group": "all"}]
    lab = make_lab("o", big_files={"50M": 50 * 2**20}, groups=groups, services=services)
    lab.ips = ips
    return lab


def ok(lab, req: dict) -> None:
    resp = lab.control(req)
    assert resp == {"ok": True}, resp


def server_of(lab, port: int = 80) -> str:
    r = lab.curl("/", port=port, args=["-D", "/dev/stderr", "-o", "/dev/null"], timeout=10)
    assert r.returncode == 0, r.stderr
    return next(ln.split(":", 1)[1].strip() for ln in r.stderr.splitlines()
                if ln.lower().startswith("x-server:"))


def test_add_server_under_load_then_drain(lab):
    seen, failures, stop = [], [], threading.Event()

    def loop():
        while not stop.is_set():
            try:
                seen.append(server_of(lab))
            except AssertionError as exc:
                failures.append(str(exc))

    t = threading.Thread(target=loop)
    t.start()
    try:
        wait_for(lambda: len(seen) >= 3, timeout=30)
        first = set(seen)
        ok(lab, {"op": "server.add", "group": "all", "address": f"{lab.ips[1]}:80", "weight": 3})
        assert wait_for(lambda: set(seen) - first, timeout=30), seen
        n = len(seen)
        wait_for(lambda: len(seen) >= n + 5, timeout=30)
    finally:
        stop.set()
        t.join()
    assert not failures, failures
    ok(lab, {"op": "server.edit", "group": "all", "address": f"{lab.ips[0]}:80", "weight": 0})
    assert len({server_of(lab) for _ in range(6)}) == 1
    ok(lab, {"op": "server.edit", "group": "all", "address": f"{lab.ips[0]}:80", "weight": 1})


def test_delete_with_reset(lab):
    ok(lab, {"op": "server.edit", "group": "all", "address": f"{lab.ips[0]}:80", "weight": 0})
    dl = lab.topo.popen(lab.clients[0].name,
                        ["curl", "-sS", "--limit-rate", "2M", "-o", "/dev/null",
                         f"http://{lab.vip}/big/50M"])
    try:
        spliced = wait_for(lambda: [c for c in lab.control({"op": "connections"})["connections"]
                                    if c["state"] == "spliced"], timeout=10)
        assert spliced and spliced[0]["server"] == f"{lab.ips[1]}:80"
        # the group keeps a server that can be chosen (a group of drained servers only is
        # refused: nothing could be chosen)
        ok(lab, {"op": "server.edit", "group": "all", "address": f"{lab.ips[0]}:80", "weight": 1})
        ok(lab, {"op": "server.del", "group": "all", "address": f"{lab.ips[1]}:80",
                 "reset": True})
        assert dl.wait(timeout=10) != 0          # reset, long before the end of 50 MB at 2 MB/s
    finally:
        if dl.poll() is None:
            dl.kill()
            dl.wait()
    assert [s["server"] for s in lab.status()["groups"]["all"]] == [f"all/{lab.ips[0]}:80"]


def test_add_and_delete_service(lab):
    assert lab.curl("/", port=8081, timeout=3).returncode != 0
    ok(lab, {"op": "service.add", "address": f"{lab.vip}:8081", "name": "web2",
             "default_group": "all"})
    assert server_of(lab, 8081)
    ok(lab, {"op": "service.del", "address": "web2"})
    assert lab.curl("/", port=8081, timeout=3).returncode != 0
    assert server_of(lab)


def test_save_restore_round_trip(lab, tmp_path):
    saved = lab.control({"op": "save"})["config"]
    path = tmp_path / "saved.yaml"
    path.write_text(saved)
    ok(lab, {"op": "restore", "text": saved, "path": str(path)})
    assert lab.control({"op": "save"})["config"] == saved
    bad = saved.replace("scheduler: rr", "scheduler: nope")
    resp = lab.control({"op": "restore", "text": bad, "path": str(path)})
    assert not resp["ok"] and resp["errors"][0].startswith(f"{path}:")
    assert lab.control({"op": "save"})["config"] == saved
