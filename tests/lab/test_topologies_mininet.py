"""Mininet topology: the Topo object, and smoke starts inside an unshare sandbox.

Mininet runs only inside `unshare --net --pid --mount-proc --fork` here, and nothing calls
Mininet's cleanup (it kills processes by name and deletes `*-eth*` links machine-wide).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from p4cs.lab import mininet_topo as M

REPO = Path(M.__file__).resolve().parents[2]  # the directory holding the p4cs package
needs_mininet = pytest.mark.skipif(M.MININET_MISSING is not None,
                                   reason=f"{M.MININET_MISSING}")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (unshare, namespaces)")


@needs_mininet
def test_topo_wires_presets_to_matching_ports() -> None:
    hosts = M.preset_hosts(n_clients=1, n_servers=3)
    topo = M.P4CSTopo(hosts=hosts)
    assert sorted(topo.hosts()) == ["c1", "s1", "s2", "s3"]
    assert topo.switches() == [M.SWITCH_NAME]
    by_host = {}
    for a, b, info in topo.links(withInfo=True):
        host = a if a != M.SWITCH_NAME else b
        sw_port = info["port2"] if info["node2"] == M.SWITCH_NAME else info["port1"]
        by_host[host] = (sw_port, info.get("addr2"))
    for h in hosts:
        assert by_host[h.name] == (h.switch_port, M.gateway_mac(h.switch_port))
        opts = topo.nodeInfo(h.name)
        assert opts["ip"] == f"{h.ip}/24" and opts["mac"] == h.mac
        assert opts["defaultRoute"] == f"via {h.gateway}"
    assert min(by_host.values())[0] == 1  # port 0 is lo / the CPU port


def test_description_matches_netns_shape() -> None:
    hosts = M.preset_hosts(n_servers=2)
    d = json.loads(json.dumps(M.describe(hosts)))
    assert d["kind"] == "mininet"
    ports = {p["port"]: p for p in d["switch"]["ports"]}
    assert ports[1]["ifname"] == "sw1-eth1" and ports[1]["host"] == "c1"
    assert ports[2]["gateway_mac"] == M.gateway_mac(2) == ports[2]["mac"]
    assert {h["ifname"] for h in d["hosts"]} == {"c1-eth0", "s1-eth0", "s2-eth0"}


def _mininet_links_here() -> list[str]:
    """Links in the caller's namespace with the names the sandboxed Mininet creates."""
    out = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    names = [ln.split()[0].split("@")[0] for ln in out.splitlines() if ln.strip()]
    return [n for n in names if re.fullmatch(r"(sw1-eth\d+|[cs]\d+-eth0)", n)]


def _run_sandbox(*args: str, timeout: float = 120) -> tuple[list[dict[str, Any]], str]:
    before = _mininet_links_here()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "p4cs.lab.mininet_topo", "--sandbox",
                           "--smoke", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)
    assert _mininet_links_here() == before, "the sandbox leaked links into this namespace"
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs, text, dec = [], proc.stdout.strip(), json.JSONDecoder()
    while text:
        obj, end = dec.raw_decode(text)
        docs.append(obj)
        text = text[end:].strip()
    return docs, proc.stderr


@needs_mininet
@needs_root
@pytest.mark.root
def test_sandbox_smoke_with_kernel_bridge() -> None:
    docs, _ = _run_sandbox("--switch", "bridge", "--servers", "2")
    res = docs[0]
    assert res["ping_s1_s2"] is True
    assert sorted(res["switch_ifaces"]) == ["sw1-eth1", "sw1-eth2", "sw1-eth3"]
    assert res["switch_ifaces"]["sw1-eth2"] == M.gateway_mac(2)
    for name, h in res["hosts"].items():
        assert h["ipv6_off"], name
        assert "PERMANENT" in h["arp"] and h["route"].startswith("default via 10.0.")


@needs_mininet
@needs_root
@pytest.mark.root
@pytest.mark.dpdk
def test_sandbox_smoke_with_p4cs_switch() -> None:
    missing = M.p4cs_switch_missing()
    if missing:
        pytest.skip(missing)
    # Lifecycle only (start on the Mininet interfaces, gRPC up, stop exactly that PID): the
    # pipeline itself is covered by the target's own tests, so it is not loaded here.
    docs, err = _run_sandbox("--servers", "2", "--switch-args=--no-pipeline", timeout=180)
    res, stopped = docs[0], docs[1]
    try:
        assert res["alive"], err
        argv = res["argv"]
        assert argv[1:4] == ["switch", "--target", "dpdk"]
        assert [argv[i + 1] for i, a in enumerate(argv) if a == "--iface"] == \
            ["1=sw1-eth1", "2=sw1-eth2", "3=sw1-eth3"]
        assert argv[argv.index("--grpc-addr") + 1] == "127.0.0.1:9559"
        assert stopped == {"stopped_pid": res["pid"], "gone": True}
    finally:
        Path(res.get("log_file", "/nonexistent")).unlink(missing_ok=True)


@needs_mininet
@needs_root
@pytest.mark.root
@pytest.mark.bmv2
@pytest.mark.slow
def test_sandbox_content_switch_on_bmv2() -> None:
    """The whole content switch in Mininet on BMv2: the controller pushes the pipeline, and
    requests through the VIP reach the server the routes name."""
    import shutil

    if shutil.which("simple_switch_grpc") is None:
        pytest.skip("BMv2 simple_switch_grpc is not on PATH")
    docs, err = _run_sandbox("--target", "bmv2", "--content-switch", "--request", "/~lcs1/",
                             "--request", "/~lcs2/", "--request", "/~lcs1/x", timeout=300)
    res = docs[0]
    got = [(r["path"], r["status"], r["server"]) for r in res["requests"]]
    assert got == [("/~lcs1/", "200", "s1"), ("/~lcs2/", "200", "s2"),
                   ("/~lcs1/x", "200", "s1")], err
    assert res["controller"]["spliced"] >= 3 and res["controller"]["flows_installed"] >= 6
