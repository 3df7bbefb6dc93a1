"""The operator views against a running lab: `p4cs status --json` (listing, rule hits,
traffic per server), `--stats`, and `--flow CLIENT_IP:PORT` reading one connection's flow
counters from the switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_util import start_download, wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

SIZE = 2 * 2**20
HOST = Path(__file__).resolve().parents[2] / "host"


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("v", big_files={"2M": SIZE})


def p4cs(lab, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{HOST}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "p4cs.cli", *args, "--socket", lab.control_socket],
                          capture_output=True, text=True, timeout=60, env=env)


def spliced_client(lab) -> str | None:
    conns = lab.control({"op": "connections"})["connections"]
    return next((c["client"] for c in conns if c["state"] == "spliced"), None)


def test_status_json_and_flow_counters(lab):
    dl = start_download(lab, "/big/2M", "200k", max_time=60)
    try:
        client = wait_for(lambda: spliced_client(lab), timeout=15)
        assert client, lab.control({"op": "connections"})

        def flows():
            r = p4cs(lab, "status", "--flow", client, "--json")
            assert r.returncode == 0, r.stderr
            fl = json.loads(r.stdout)["flows"]
            return fl if len(fl) == 2 and all(f["packets"] for f in fl) else None
        fl = wait_for(flows, timeout=15, interval=0.5)
        assert fl, p4cs(lab, "status", "--flow", client, "--json").stdout
        assert {f["direction"] for f in fl} == {"c2s", "s2c"}
        assert all(f["client"] == client and f["bytes"] > 0 for f in fl)
        out = next(f for f in fl if f["direction"] == "s2c")
        r = p4cs(lab, "status", "--flow", client)
        assert r.returncode == 0 and str(out["flow_id"]) in r.stdout, r.stdout + r.stderr

        def status():
            r = p4cs(lab, "status", "--json")
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)["status"]

        def counted():        # a sample taken after the flows carried bytes
            st = status()
            server = st["traffic"].get("servers", {}).get(out["server"], {})
            return st if server.get("out_bytes", 0) > 0 else None
        st = wait_for(counted, timeout=15, interval=0.5)
        assert st, status()["traffic"]
        assert sum(r["hits"] for r in st["rules"]) >= 1, st["rules"]
        svc = st["services"][0]
        assert svc["groups"], svc
        r = p4cs(lab, "status", "--stats")
        assert r.returncode == 0 and "InBytes" in r.stdout, r.stdout + r.stderr
        assert f"{svc['vip']}:{svc['port']}" in r.stdout
    finally:
        dl.wait(timeout=90)
    r = p4cs(lab, "status", "--flow", "192.0.2.1:1")
    assert r.returncode == 1 and r.stderr.startswith("p4cs status: error: no flow"), r.stderr
