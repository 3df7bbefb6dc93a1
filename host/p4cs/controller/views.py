"""Listings of a controller's status (the dict of the ``status`` control request), shaped like
``ipvsadm -L -n`` and its ``--stats`` / ``--rate`` variants, and the tables of `p4cs top`.

Every function here reads a status dict and nothing else, so the listings are the same
whether they are printed once (`p4cs status`) or refreshed (`p4cs top`)."""

from __future__ import annotations

from typing import Any

#: The Forward column: how the switch reaches the server for each service mode.
FORWARD = {"transparent": "Trans", "snat": "SNAT"}
#: Column headers per listing, as ipvsadm prints them.
STATS_COLS = ("Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
RATE_COLS = ("CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
STATS_KEYS = ("conns", "in_packets", "out_packets", "in_bytes", "out_bytes")
RATE_KEYS = ("cps", "in_pps", "out_pps", "in_bps", "out_bps")


def server_state(s: dict) -> str:
    if not s["up"]:
        return "down"
    return "overloaded" if s.get("overloaded") else "up"


def _services(st: dict) -> list[tuple[dict, list[tuple[str, dict]]]]:
    """(service, [(group, server), ...]) in the order of the configuration."""
    out = []
    for svc in st["services"]:
        servers = [(g, s) for g in svc.get("groups", []) for s in st["groups"].get(g, [])]
        out.append((svc, servers))
    return out


def _scheduler(st: dict, svc: dict) -> str:
    groups = svc.get("groups") or []
    scheds = sorted({s["scheduler"] for g in groups for s in st["groups"].get(g, [])})
    return "/".join(scheds) or "-"


def _num(v: Any) -> str:
    """ipvsadm's numbers: integers as such, rates rounded, large values with K/M/G."""
    if isinstance(v, float) and not v.is_integer():
        v = round(v)
    v = int(v)
    for unit, size in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if v >= 100 * size:
            return f"{v // size}{unit}"
    return str(v)


def _l4(st: dict) -> dict[str, dict]:
    """The L4 services of a status by name (what the data plane balances by itself)."""
    return {s["name"]: s for s in st.get("l4") or []}


def ipvs_listing(st: dict, kind: str = "list") -> str:
    """``ipvsadm -L -n`` (kind ``list``), ``--stats`` or ``--rate`` of a status dict. The
    servers of an L4 service are those of its Maglev table, with no connection counts and no
    traffic (``-``: the controller sees none of their packets)."""
    traffic = st.get("traffic") or {}
    l4 = _l4(st)
    lines: list[str] = []
    if kind == "list":
        lines.append("Prot LocalAddress:Port Scheduler Flags")
        lines.append("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn State")
    else:
        cols = STATS_COLS if kind == "stats" else RATE_COLS
        lines.append(f"{'Prot LocalAddress:Port':<34}" + " ".join(f"{c:>8}" for c in cols))
        lines.append("  -> RemoteAddress:Port")
    keys = STATS_KEYS if kind == "stats" else RATE_KEYS
    for svc, servers in _services(st):
        local = f"{svc['vip']}:{svc['port']}"
        if svc["name"] in l4:
            lines.extend(_l4_listing(l4[svc["name"]], local, kind))
            continue
        if kind == "list":
            flags = "" if svc.get("protocol", "http") == "http" else svc["protocol"]
            lines.append(f"TCP  {local} {_scheduler(st, svc)} {flags}".rstrip())
        else:
            t = (traffic.get("services") or {}).get(svc["name"], {})
            lines.append(f"TCP  {local:<29}" + " ".join(f"{_num(t.get(k, 0)):>8}" for k in keys))
        for _group, s in servers:
            addr = s.get("address", s["server"])
            if kind == "list":
                lines.append(f"  -> {addr:<28} {FORWARD.get(svc['mode'], svc['mode']):<7} "
                             f"{s['weight']:<6} {s['active']:<10} {s.get('inactive', 0):<9} "
                             f"{server_state(s)}")
            else:
                t = (traffic.get("servers") or {}).get(s["server"], {})
                lines.append(f"  -> {addr:<29}" + " ".join(f"{_num(t.get(k, 0)):>8}" for k in keys))
    return "\n".join(lines)


def _l4_listing(svc: dict, local: str, kind: str) -> list[str]:
    prot = svc["protocol"].upper()
    if kind == "list":
        lines = [f"{prot:<4} {local} maglev {svc['protocol']}"]
        lines += [f"  -> {s['server']:<28} {'Trans':<7} {s['weight']:<6} {'-':<10} {'-':<9} "
                  f"{s['state']}" for s in svc["servers"]]
        return lines
    dash = " ".join(f"{'-':>8}" for _ in STATS_COLS)
    return [f"{prot:<4} {local:<29}" + dash] + \
        [f"  -> {s['server']:<29}" + dash for s in svc["servers"]]


def server_rows(st: dict) -> list[tuple[str, ...]]:
    """One row per (service, server): the columns of `p4cs top`'s servers table."""
    servers = (st.get("traffic") or {}).get("servers") or {}
    rows = []
    for svc, members in _services(st):
        for group, s in members:
            t = servers.get(s["server"], {})
            rows.append((svc["name"], group, s.get("address", s["server"]), server_state(s),
                         str(s["weight"]), str(s["active"]), str(s.get("inactive", 0)),
                         _num(t.get("cps", 0)), _num(t.get("in_bps", 0)),
                         _num(t.get("out_bps", 0))))
    return rows


def service_rows(st: dict) -> list[tuple[str, ...]]:
    services = (st.get("traffic") or {}).get("services") or {}
    rows = []
    for svc in st["services"]:
        t = services.get(svc["name"], {})
        rows.append((svc["name"], f"{svc['vip']}:{svc['port']}", svc["mode"],
                     _scheduler(st, svc), _num(t.get("conns", 0)), _num(t.get("cps", 0)),
                     _num(t.get("in_bps", 0)), _num(t.get("out_bps", 0))))
    return rows


def rule_rows(st: dict) -> list[tuple[str, ...]]:
    return [(r["service"], r["rule"] if r["rule"] is not None else "(no rule)", str(r["hits"]),
             f"{r['last_hit_ago_s']:.1f} s ago") for r in st.get("rules") or []]


def path_rows(st: dict) -> list[tuple[str, str]]:
    """Fast path (switch flow counters) against slow path (packets through the controller)."""
    fast = (st.get("traffic") or {}).get("fastpath") or {}
    c = st["counters"]
    return [("fast path packets", str(fast.get("packets", c["fastpath_packets"]))),
            ("fast path bytes", str(fast.get("bytes", c["fastpath_bytes"]))),
            ("slow path packets in", str(c["packet_in"])),
            ("slow path packets out", str(c["packet_out"]))]


def flow_rows(flows: list[dict]) -> list[tuple[str, ...]]:
    return [(str(f["flow_id"]), "in" if f["direction"] == "c2s" else "out", f["client"],
             f["service"], f["server"], "-" if f["packets"] is None else str(f["packets"]),
             "-" if f["bytes"] is None else str(f["bytes"])) for f in flows]


#: Columns of the ports listing and the status keys (the switch's own names) they show.
PORT_COLS = ("Port", "Type", "Name", "RxPkts", "RxBytes", "TxPkts", "TxBytes", "RxDrop",
             "RxErr", "TxDrop")
PORT_KEYS = ("rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes", "rx_drops", "rx_errors", "tx_drops")


def dataplane_unavailable(st: dict) -> str | None:
    """Why the switch's own counters are not in the status (None: they are)."""
    dp = st.get("dataplane") or {"available": False, "reason": "not reported by this controller"}
    return None if dp.get("available") else str(dp.get("reason"))


def port_rows(st: dict) -> list[tuple[str, ...]]:
    """One row per port of the switch: its counters (none when they are not available)."""
    if dataplane_unavailable(st) is not None:
        return []
    return [(str(p["port"]), str(p["type"]), str(p["name"]),
             *(_num(p.get(k) or 0) for k in PORT_KEYS)) for p in st["dataplane"]["ports"]]


def ports_listing(st: dict) -> str:
    """The ports and their counters as text (columns as wide as their values), or one line
    saying why there are none."""
    why = dataplane_unavailable(st)
    if why is not None:
        return f"Ports: {why}"
    rows = [PORT_COLS, *port_rows(st)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(PORT_COLS))]
    return "\n".join(" ".join(f"{v:<{w}}" if i < 3 else f"{v:>{w}}"
                               for i, (v, w) in enumerate(zip(r, widths))).rstrip()
                      for r in rows)


#: Columns of the L4 services listing.
L4_COLS = ("service", "vip:port", "group", "server", "weight", "buckets", "state")


def l4_rows(st: dict) -> list[tuple[str, ...]]:
    """One row per server of each L4 service: its weight, its share of the Maglev table and
    its state (``active``, ``drained``: weight 0, or ``retired``: left the service, its
    return path kept for the seconds shown)."""
    rows = []
    for svc in st.get("l4") or []:
        local = f"{svc['vip']}:{svc['port']}/{svc['protocol']}"
        size = svc["maglev_size"]
        for s in svc["servers"]:
            rows.append((svc["name"], local, svc["group"], s["server"], str(s["weight"]),
                         f"{s['buckets']}/{size}", s["state"]))
        for r in svc["retired"]:
            rows.append((svc["name"], local, svc["group"], r["server"], "-", f"0/{size}",
                         f"retired ({r['left_s']:.0f} s left)"))
    return rows


#: What the data plane counts for the L4 services (all of them together: the tables are
#: shared): (label, kind, table, key).
L4_COUNTERS = (
    ("packets to L4 services", "tables", "l4_service", "hit"),
    ("packets of known connections", "learners", "l4_flows", "hit"),
    ("connections learned", "learners", "l4_flows", "learn"),
    ("connections not learned (table full)", "learners", "l4_flows", "learn_err"),
    ("packets whose bucket has no server", "tables", "l4_maglev", "miss"),
    ("packets from servers (answers)", "tables", "l4_reverse", "hit"),
)


def l4_counter_rows(st: dict) -> list[tuple[str, str]]:
    """The data plane's counts of the L4 services (none when its counters are not
    available)."""
    if dataplane_unavailable(st) is not None:
        return []
    dp = st["dataplane"]
    found = {(kind, t["name"]): t for kind in ("tables", "learners") for t in dp.get(kind) or []}
    return [(label, _num(found[(kind, table)].get(key, 0)))
            for label, kind, table, key in L4_COUNTERS if (kind, table) in found]
