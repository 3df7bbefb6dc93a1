"""The operator views against a running lab: `p4cs status --json` (listing, rule hits,
traffic per server), `--stats`, `--flow CLIENT_IP:PORT` reading one connection's flow
counters from the switch, and the switch's per-port counters (none on BMv2)."""

from __future__ import annotations

import json

import pytest

from e2e_util import p4cs, start_download, wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

SIZE = 2 * 2**20


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("v", big_files={"2M": SIZE})


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


def test_port_counters_after_a_fetch(lab, target):
    r = lab.curl("/", args=["-D", "-", "-o", "/dev/null"])
    assert r.returncode == 0, r.stderr
    served = next(line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
                  if line.lower().startswith("x-server:"))
    client_port = lab.clients[0].switch_port
    server_port = next(h.switch_port for i, h in enumerate(lab.servers)
                       if lab.server_name(i) == served)
    if target == "bmv2":        # simple_switch has no port counters over P4Runtime
        st = json.loads(p4cs(lab, "status", "--json").stdout)["status"]
        assert st["dataplane"] == {"available": False, "reason": "not available on this target"}
        r = p4cs(lab, "status")
        assert r.returncode == 0 and "Ports: not available on this target" in r.stdout, r.stdout
        return

    def counted():      # a status sampled after the fetch: rx and tx on both ports
        st = json.loads(p4cs(lab, "status", "--json").stdout)["status"]
        ports = {p["port"]: p for p in (st["dataplane"].get("ports") or [])}
        ok = all(ports.get(n, {}).get(k) for n in (client_port, server_port)
                 for k in ("rx_pkts", "tx_pkts", "rx_bytes", "tx_bytes"))
        return st if ok else None
    st = wait_for(counted, timeout=15, interval=0.5)
    assert st, json.loads(p4cs(lab, "status", "--json").stdout)["status"]["dataplane"]
    ports = {p["port"]: p for p in st["dataplane"]["ports"]}
    assert ports[client_port]["name"].endswith(lab.topo.switch_ifname(client_port))
    r = p4cs(lab, "status")
    assert r.returncode == 0, r.stderr
    row = next(line.split() for line in r.stdout.splitlines()
               if line.split()[:1] == [str(client_port)] and "RxPkts" not in line)
    assert row[2] == ports[client_port]["name"] and int(row[3]) > 0, r.stdout
