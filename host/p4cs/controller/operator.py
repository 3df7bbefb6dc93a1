"""Live editing of a running controller (the ipvsadm verbs), and its logs.

Every edit is one atomic change: the running configuration is copied as a document, the
change is applied to the copy, the copy is validated by the configuration file's own
validator (:func:`p4cs.controller.config.parse_config`, so errors read the same, with
``<cli>`` as the file), and only then does the engine take the new services and groups
(``Engine.reconfigure``: running connections and server counters carry on) and the base
tables get the difference (:class:`p4cs.controller.reconcile.BaseTables`). A rejected edit
changes nothing.

    service.add/edit/del   ipvsadm -A / -E / -D
    server.add/edit/del    ipvsadm -a / -e / -d     (weight 0 drains; del --reset resets)
    set                    ipvsadm --set tcp tcpfin udp
    save / restore         ipvsadm-save / ipvsadm-restore

Logs: spliced connections go to the access log (``p4cs.access``: off unless
``--access-log``/``control.access_log`` names a file, ``syslog`` or ``-``), one line each in
the fields of an HAProxy log; state changes and errors stay in the main log.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import logging.handlers
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from finsy.p4client import P4ClientError

from p4cs import params as params_mod
from p4cs.controller.config import PERSISTENCE_KEYS, Config, ConfigError, parse_config
from p4cs.controller.reconcile import BaseTables
from p4cs.csproc import effects as fx

LOG = logging.getLogger("p4cs.controller")
ACCESS = logging.getLogger("p4cs.access")
ACCESS.propagate = False        # its own destination only (setup_logging); none: off
CLI = "<cli>"
#: Sections a restore may change; the others need a restart of the controller.
LIVE_SECTIONS = ("groups", "services", "limits")


# ---------------------------------------------------------------------- logs
class _NoGnmi(logging.Filter):
    """finsy warns at every start that the switch has no gNMI (p4cs does not use it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "gNMI is not implemented" not in record.getMessage()


_NO_GNMI = _NoGnmi()


def quiet_engine(engine) -> None:
    """Turn off the engine's log effects that ``log_effect`` would drop: "spliced" without an
    access log, debug ones below debug level (after ``setup_logging``)."""
    engine.log_spliced = bool(ACCESS.handlers)
    engine.log_debug = LOG.isEnabledFor(logging.DEBUG)


def setup_logging(access_log: str | None) -> None:
    """The access log's destination (None: off) and the finsy filter."""
    logging.getLogger("finsy").addFilter(_NO_GNMI)     # once, however often this runs
    for h in list(ACCESS.handlers):
        ACCESS.removeHandler(h)
    if access_log is None:
        return
    if access_log == "-":
        handler: logging.Handler = logging.StreamHandler(sys.stdout)
    elif access_log == "syslog":
        handler = logging.handlers.SysLogHandler(address="/dev/log")
    else:
        Path(access_log).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(access_log)
    handler.setFormatter(logging.Formatter("%(asctime)s p4cs %(message)s"))
    ACCESS.addHandler(handler)
    ACCESS.setLevel(logging.INFO)


def access_line(f: dict) -> str:
    """client:port service rule server request-bytes rtt_ms bind_ms (HAProxy's order:
    client, frontend, backend/server, bytes, timers)."""
    return (f"{f.get('client')} {f.get('service')} {f.get('rule') or '-'} {f.get('server')} "
            f"{f.get('bytes', '-')} {f.get('rtt_ms', '-')} {f.get('bind_ms', '-')}")


def log_effect(e: fx.Log) -> None:
    """A log effect of the engine: spliced connections to the access log, the rest to the
    main log."""
    if e.msg == "spliced":
        if ACCESS.handlers:
            ACCESS.info(access_line(e.fields))
        return
    level = _LEVELS.get(e.level)
    if level is None:
        level = _LEVELS[e.level] = logging.getLevelName(e.level.upper())
    if LOG.isEnabledFor(level):     # two effects per connection: most are debug
        LOG.log(level, "%s %s", e.msg, " ".join(f"{k}={v}" for k, v in e.fields.items()))


#: log level name of an effect -> logging level
_LEVELS: dict[str, int] = {}


# ---------------------------------------------------------------------- config <-> document
def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def to_doc(cfg: Config) -> dict:
    """The configuration as a document that ``parse_config`` reads back to ``cfg``
    (paths absolute)."""
    sw = cfg.switch
    doc: dict[str, Any] = {
        "switch": _clean({"address": sw.address, "device_id": sw.device_id, "target": sw.target,
                          "p4info": str(sw.p4info.resolve()) if sw.p4info else None,
                          "p4blob": str(sw.p4blob.resolve()) if sw.p4blob else None}),
        "ports": {n: {"mac": p.mac, "gateway": str(p.gateway)} for n, p in cfg.ports.items()},
        "hosts": [{"name": h.name, "ip": h.ip, "mac": h.mac, "port": h.port} for h in cfg.hosts],
        "groups": {},
        "services": [],
    }
    for name, g in cfg.groups.items():
        gd: dict[str, Any] = {"scheduler": g.scheduler, "slow_start_s": g.slow_start_s}
        if g.health is not None:
            gd["health"] = dataclasses.asdict(g.health)
        gd["servers"] = [dataclasses.asdict(s) for s in g.servers]
        doc["groups"][name] = gd
    for s in cfg.services:
        sd: dict[str, Any] = {"name": s.name, "vip": s.vip, "port": s.port, "mode": s.mode,
                              "snat_address": s.snat_address, "protocol": s.protocol,
                              "default_group": s.default_group}
        if s.routes:
            sd["routes"] = [_clean(dataclasses.asdict(r)) for r in s.routes]
        if s.rules is not None:
            sd["rules"] = str(s.rules.resolve())
        if s.persistence is not None:
            pd = dataclasses.asdict(s.persistence)
            # each kind's own keys only
            sd["persistence"] = _clean({k: pd[k] for k in ("kind",)
                                        + PERSISTENCE_KEYS[s.persistence.kind]})
        if s.server_pool is not None:
            sd["server_pool"] = dataclasses.asdict(s.server_pool)
        doc["services"].append(_clean(sd))
    doc["limits"] = dataclasses.asdict(cfg.limits)
    doc["control"] = _clean(dataclasses.asdict(cfg.control))
    default = params_mod.defaults(sw.target)
    dp = {f.name: getattr(cfg.dataplane, f.name) for f in dataclasses.fields(cfg.dataplane)
          if f.name != "target" and getattr(cfg.dataplane, f.name) != getattr(default, f.name)}
    if dp:
        doc["dataplane"] = {k: list(v) if isinstance(v, tuple) else v for k, v in dp.items()}
    if cfg.ha is not None:
        doc["ha"] = dataclasses.asdict(cfg.ha)
    return doc


def dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)


def validate(doc: dict) -> Config:
    """The configuration of an edited document, by the file's validator; ConfigError
    names ``<cli>`` (lines of a generated document would mean nothing)."""
    try:
        return parse_config(dump(doc), CLI)
    except ConfigError as exc:
        raise ConfigError(exc.msg, CLI) from None


# ---------------------------------------------------------------------- edits of a document
def _err(msg: str) -> ConfigError:
    return ConfigError(msg, CLI)


def _service(doc: dict, service: str) -> dict:
    """The service named ``service`` or at ``service`` (VIP:port)."""
    for s in doc["services"]:
        if s["name"] == service or f"{s['vip']}:{s['port']}" == service:
            return s
    raise _err(f"no service {service!r}")


def _vip_port(text: Any) -> tuple[str, int]:
    vip, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit():
        raise _err(f"{text!r}: expected VIP:PORT")
    return vip, int(port)


_SERVICE_KEYS = ("name", "mode", "snat_address", "protocol", "default_group", "rules")


def _service_fields(doc: dict, sd: dict, req: dict) -> None:
    for k in _SERVICE_KEYS:
        if req.get(k) is not None:
            sd[k] = req[k]
    cookie = [k for k in ("cookie-learn", "cookie-insert") if req.get(k.replace("-", "_"))]
    if len(cookie) > 1:
        raise _err("a service learns its cookie or inserts it, not both")
    if cookie:                                  # the cookie's name; -p: cookie-learn's timeout
        old = sd.get("persistence") or {}
        sd["persistence"] = _clean({"kind": cookie[0],
                                    "name": req[cookie[0].replace("-", "_")],
                                    "timeout_s": req.get("persistence") or None,
                                    # a file's key of the server ids stays
                                    "key": old.get("key") if old.get("kind") == cookie[0]
                                    else None})
    elif req.get("persistence") is not None:    # seconds; 0 removes it
        kind = (sd.get("persistence") or {}).get("kind", "client-ip")
        if req["persistence"] == 0:
            sd.pop("persistence", None)
        elif kind == "cookie-insert" and not req.get("netmask"):
            raise _err("cookie-insert persistence has no timeout (-p 0 removes it, "
                       "-p S -M MASK makes the persistence client-IP)")
        elif kind != "client-ip" and not req.get("netmask"):
            sd["persistence"] = {**sd["persistence"], "timeout_s": req["persistence"]}
        else:
            sd["persistence"] = {"timeout_s": req["persistence"],
                                 "netmask": req.get("netmask") or "255.255.255.255"}
    if req.get("scheduler") is not None:        # the scheduler of the service's pool
        g = sd.get("default_group")
        if g not in doc["groups"]:
            raise _err("a scheduler needs the service's default group (--group)")
        doc["groups"][g]["scheduler"] = req["scheduler"]


def _server_group(doc: dict, req: dict) -> str:
    if req.get("group"):
        return str(req["group"])
    if req.get("service"):
        g = _service(doc, str(req["service"])).get("default_group")
        if g is None:
            raise _err(f"service {req['service']} has no default group: name one with --group")
        return g
    raise _err("a server needs --group or --service")


def _server(doc: dict, group: str, addr: str, port: int) -> dict:
    g = doc["groups"].get(group)
    for s in (g or {}).get("servers", []):
        if s["address"] == addr and s["port"] == port:
            return s
    raise _err(f"no server {addr}:{port} in group {group!r}")


_SERVER_KEYS = ("weight", "upper_threshold", "lower_threshold")


def edit(doc: dict, req: dict) -> dict:
    """Apply one edit (a control request) to a copy of ``doc``; ConfigError if it names
    something that does not exist (or exists already)."""
    doc = copy.deepcopy(doc)
    op = req["op"]
    if op == "service.add":
        vip, port = _vip_port(req.get("address"))
        if any(s["vip"] == vip and s["port"] == port for s in doc["services"]):
            raise _err(f"service {vip}:{port} exists already")
        sd = {"name": f"{vip}:{port}", "vip": vip, "port": port}
        _service_fields(doc, sd, req)
        doc["services"].append(sd)
    elif op == "service.edit":
        _service_fields(doc, _service(doc, str(req.get("address"))), req)
    elif op == "service.del":
        doc["services"].remove(_service(doc, str(req.get("address"))))
    elif op == "server.add":
        group = _server_group(doc, req)
        addr, port = _vip_port(req.get("address"))
        g = doc["groups"].setdefault(group, {"scheduler": req.get("scheduler") or "rr",
                                             "servers": []})
        if any(s["address"] == addr and s["port"] == port for s in g["servers"]):
            raise _err(f"server {addr}:{port} exists already in group {group!r}")
        g["servers"].append({"address": addr, "port": port,
                             **{k: req[k] for k in _SERVER_KEYS if req.get(k) is not None}})
    elif op == "server.edit":
        addr, port = _vip_port(req.get("address"))
        s = _server(doc, _server_group(doc, req), addr, port)
        s.update({k: req[k] for k in _SERVER_KEYS if req.get(k) is not None})
    elif op == "server.del":
        group = _server_group(doc, req)
        addr, port = _vip_port(req.get("address"))
        s = _server(doc, group, addr, port)
        doc["groups"][group]["servers"].remove(s)
    elif op == "set":
        lim = doc["limits"]
        for key, field in (("tcp", "flow_idle_timeout_s"), ("tcpfin", "teardown_delay_s"),
                           ("udp", "udp_idle_timeout_s")):
            if req.get(key) is not None:
                lim[field] = req[key]
    else:
        raise _err(f"unknown edit {op!r}")
    return doc


EDITS = ("service.add", "service.edit", "service.del", "server.add", "server.edit",
         "server.del", "set")


# ---------------------------------------------------------------------- the running controller
class Operator:
    """The operator's ops on the control socket of ``app`` (a ControllerApp)."""

    def __init__(self, app):
        self.app = app
        self._lock = asyncio.Lock()

    async def handle(self, req: dict) -> dict | None:
        """The answer to an operator op, or None when ``req`` is not one."""
        op = req.get("op")
        if op == "save":
            return {"ok": True, "config": dump(self.running())}
        if op not in EDITS and op != "restore":
            return None
        async with self._lock:
            try:
                if op == "restore":
                    cfg = self._restored(req)
                else:
                    cfg = validate(edit(self.running(), req))
                reset = ()
                if op == "server.del" and req.get("reset"):
                    addr, port = _vip_port(req["address"])
                    reset = (f"{_server_group(self.running(), req)}/{addr}:{port}",)
                return await self.apply(cfg, reset)
            except ConfigError as exc:
                return {"ok": False, "errors": [str(exc)]}

    def running(self) -> dict:
        """The running configuration as a document, with the weights the servers have now
        (the control socket's ``server.weight`` changes them outside the configuration)."""
        doc = to_doc(self.app.cfg)
        for name, g in self.app.engine.groups.items():
            weights = {s.name: s.weight for s in g.servers}
            for s in doc["groups"][name]["servers"]:
                s["weight"] = weights.get(f"{name}/{s['address']}:{s['port']}", s["weight"])
        return doc

    def _restored(self, req: dict) -> Config:
        text, path = req.get("text"), str(req.get("path") or CLI)
        if not isinstance(text, str):
            raise _err("'text' (a configuration) is required")
        cfg = parse_config(text, path)
        run, new = self.running(), to_doc(cfg)
        for section in run.keys() | new.keys():
            if section not in LIVE_SECTIONS and run.get(section) != new.get(section):
                raise ConfigError(f"'{section}' differs from the running controller's: a restore "
                                  f"changes only {', '.join(LIVE_SECTIONS)} (restart to change "
                                  "the rest)", path)
        return cfg

    async def apply(self, cfg: Config, reset: tuple[str, ...] = ()) -> dict:
        """Run ``cfg`` (validated): engine first, then the base tables of the switch.
        Servers named in ``reset`` have their connections reset."""
        app, now = self.app, time.monotonic()
        stores: dict[str, Any] = {}
        try:
            services, groups, ecfg = app.engine_parts(cfg, stores, share=(0, app.n_workers))
        except ValueError as exc:
            return {"ok": False, "errors": [f"{CLI}: {exc}"]}
        eng = app.engine
        servers = {s.name: s for g in eng.groups.values() for s in g.servers}
        effects = eng.reconfigure(services, groups, ecfg, now)
        app.l4_retired.change(app.cfg, cfg, now)
        app.cfg, app.rule_stores = cfg, stores
        if app.workers is not None:
            app.workers.reconfigure(cfg, reset)
        app.resolver.want(cfg, now)
        effects += [e for name in reset if name in servers
                    for e in eng.reset_server(servers[name], now, "server deleted")]
        LOG.info("configuration changed: %d service(s), %d group(s)%s", len(cfg.services),
                 len(cfg.groups), f", reset connections of {', '.join(reset)}" if reset else "")
        # The engine's effects run whatever becomes of the switch's tables: its connections
        # moved on (a redispatched one may be spliced onto a pooled server connection at
        # once), and an install or removal left out would leave it believing in entries that
        # never come (or stay). Without a session, or when the base tables' write just
        # failed, the installs and removals go to the install and teardown loops (those of
        # the next session, without one) and the packets are not sent (the connections'
        # timers retransmit).
        quiet = [e for e in effects if not isinstance(e, fx.PacketOut)]
        sw = app.switch
        if sw is None or not app.ready.is_set():
            await app._execute(quiet)
            return {"ok": True}     # the base tables are reconciled when the switch is back
        try:
            await BaseTables(app.base_entries(), app.clone_session(), "flow_table").reconcile(sw)
        except P4ClientError as exc:
            LOG.warning("configuration changed, switch not updated: %s", exc)
            await app._execute(quiet)
            return {"ok": False, "errors": [f"the controller runs the change, but the switch "
                                            f"was not updated ({exc.message or exc}): it is "
                                            "reconciled at the next connection"]}
        if effects:
            await app._execute(effects)
        return {"ok": True}

    async def refresh_base(self) -> None:
        """Write the base tables of the running configuration again (the reverse entries of
        servers that left an L4 service have had their time)."""
        async with self._lock:
            sw = self.app.switch
            if sw is None or not self.app.ready.is_set():
                return
            try:
                await BaseTables(self.app.base_entries(), self.app.clone_session(),
                                 "flow_table").reconcile(sw)
            except P4ClientError as exc:
                LOG.warning("base tables not refreshed: %s", exc)
