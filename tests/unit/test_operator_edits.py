"""Live edits (p4cs service/server/set/save/restore): a copy of the running configuration,
changed and validated by the configuration file's validator; the engine takes the result
with its running servers' state."""

import asyncio
from pathlib import Path

import pytest

from p4cs.controller.config import ConfigError, load_config, parse_config
from p4cs.controller.operator import dump, edit, to_doc, validate

LCS = Path(__file__).resolve().parents[2] / "examples" / "lcs.yaml"


@pytest.fixture
def cfg():
    return load_config(LCS)


def test_save_round_trip(cfg):
    text = dump(to_doc(cfg))
    again = parse_config(text, "<saved>")
    assert dump(to_doc(again)) == text
    assert again.services == cfg.services and again.groups == cfg.groups
    assert again.limits == cfg.limits


def test_service_add_edit_del(cfg):
    doc = edit(to_doc(cfg), {"op": "service.add", "address": "10.0.0.101:8080",
                             "default_group": "all", "scheduler": "wlc", "persistence": 60})
    new = validate(doc)
    svc = next(s for s in new.services if s.port == 8080)
    assert (svc.vip, svc.name, svc.default_group) == ("10.0.0.101", "10.0.0.101:8080", "all")
    assert svc.persistence.timeout_s == 60 and new.groups["all"].scheduler == "wlc"
    doc = edit(doc, {"op": "service.edit", "address": "10.0.0.101:8080", "mode": "snat",
                     "snat_address": "10.0.2.250", "persistence": 0})
    svc = next(s for s in validate(doc).services if s.port == 8080)
    assert svc.mode == "snat" and svc.persistence is None
    doc = edit(doc, {"op": "service.del", "address": "10.0.0.101:8080"})
    assert validate(doc).services == cfg.services


def test_server_add_edit_del(cfg):
    doc = edit(to_doc(cfg), {"op": "server.add", "group": "ace", "address": "10.0.2.3:80",
                             "weight": 3})
    assert validate(doc).groups["ace"].servers[-1].weight == 3
    doc = edit(doc, {"op": "server.edit", "service": "web", "group": "ace",
                     "address": "10.0.2.3:80", "weight": 0})
    assert validate(doc).groups["ace"].servers[-1].weight == 0
    doc = edit(doc, {"op": "server.del", "group": "ace", "address": "10.0.2.3:80"})
    assert validate(doc).groups == cfg.groups
    doc = edit(to_doc(cfg), {"op": "server.add", "group": "new", "address": "10.0.2.9:80",
                             "scheduler": "lc"})
    assert validate(doc).groups["new"].scheduler == "lc"


def test_set_timeouts(cfg):
    new = validate(edit(to_doc(cfg), {"op": "set", "tcp": 900, "tcpfin": 120, "udp": 300}))
    assert (new.limits.flow_idle_timeout_s, new.limits.teardown_delay_s,
            new.limits.udp_idle_timeout_s) == (900, 120.0, 300)


@pytest.mark.parametrize("req, msg", [
    ({"op": "service.add", "address": "10.0.0.100:80"}, "<cli>: service 10.0.0.100:80 exists already"),
    ({"op": "service.add", "address": "10.0.0.7"}, "<cli>: '10.0.0.7': expected VIP:PORT"),
    ({"op": "service.add", "address": "10.0.0.7:80", "default_group": "nope"},
     "<cli>: default_group names unknown group 'nope'"),
    ({"op": "service.add", "address": "300.0.0.7:80"}, "<cli>: 'vip': '300.0.0.7' is not an IPv4 address"),
    ({"op": "service.del", "address": "10.0.0.9:80"}, "<cli>: no service '10.0.0.9:80'"),
    ({"op": "server.edit", "group": "ace", "address": "10.0.2.1:80", "weight": 5000},
     "<cli>: 'weight' must be an integer in [0, 1000], got 5000"),
    ({"op": "server.edit", "group": "ace", "address": "10.0.2.7:80", "weight": 1},
     "<cli>: no server 10.0.2.7:80 in group 'ace'"),
    ({"op": "server.del", "group": "ace", "address": "10.0.2.1:80"}, "<cli>: group ace has no servers"),
    ({"op": "server.add", "address": "10.0.2.1:80"}, "<cli>: a server needs --group or --service"),
    ({"op": "server.del", "group": "nope", "address": "10.0.2.1:80"},
     "<cli>: no server 10.0.2.1:80 in group 'nope'"),
    ({"op": "set", "tcp": 0}, "<cli>: 'flow_idle_timeout_s' must be an integer in [1, 604800], got 0"),
])
def test_errors_are_one_line(cfg, req, msg):
    with pytest.raises(ConfigError) as ei:
        validate(edit(to_doc(cfg), req))
    assert str(ei.value) == msg


def test_engine_keeps_running_servers(cfg):
    """An edit keeps the Server objects (connections, counters) of servers that stay."""
    from p4cs.controller.app import ControllerApp
    from p4cs.controller.operator import Operator

    app = ControllerApp(cfg, Path("unused"))
    ace = app.engine.groups["ace"].servers[0]
    ace.total = 7
    req = {"op": "server.add", "group": "ace", "address": "10.0.2.3:80", "weight": 3}
    assert asyncio.run(Operator(app).handle(req)) == {"ok": True}
    servers = app.engine.groups["ace"].servers
    assert servers[0] is ace and ace.total == 7
    assert [s.name for s in servers] == ["ace/10.0.2.1:80", "ace/10.0.2.3:80"]
    assert app.cfg.groups["ace"].servers[-1].weight == 3
    bad = {"op": "server.edit", "group": "ace", "address": "10.0.2.1:80", "weight": -1}
    resp = asyncio.run(Operator(app).handle(bad))
    assert not resp["ok"] and len(app.engine.groups["ace"].servers) == 2
    assert asyncio.run(Operator(app).handle({"op": "server.edit", "group": "ace",
                                             "address": "10.0.2.1:80", "weight": 0}))["ok"]
    assert ace.weight == 0


def test_cli_one_line_errors_and_save(cfg, monkeypatch, capsys):
    """`p4cs server|service|set|save`: a rejected edit is one line on stderr, exit 2."""
    from p4cs.cli import main
    from p4cs.controller import cli as controller_cli
    from p4cs.controller.app import ControllerApp

    ctl = ControllerApp(cfg, Path("unused"))
    monkeypatch.setattr(controller_cli, "control_request",
                        lambda req, sock: asyncio.run(ctl.handle_control(req)))

    def run(*args):
        with pytest.raises(SystemExit) as e:
            main(list(args))
        out, err = capsys.readouterr()
        return e.value.code, out, err

    code, _, err = run("server", "edit", "-g", "ace", "-r", "10.0.2.1:80", "-w", "5000")
    assert code == 2
    assert err == "p4cs server edit: error: <cli>: 'weight' must be an integer in [0, 1000], got 5000\n"
    code, _, err = run("server", "add", "-t", "10.0.0.100:80", "-r", "10.0.2.3:80")
    assert code == 2 and err.count("\n") == 1   # web has no default group
    assert run("set", "--tcp", "900", "--tcpfin", "120", "--udp", "300")[0] == 0
    code, out, _ = run("save")
    assert code == 0 and "flow_idle_timeout_s: 900" in out
    assert parse_config(out, "<saved>").limits.teardown_delay_s == 120.0
    ctl.engine.set_weight("ace", "ace/10.0.2.1:80", 4, 0.0)     # the server.weight op
    assert "weight: 4" in run("save")[1]


def test_access_log_and_gnmi_filter(tmp_path, caplog):
    """Spliced connections go to the access log only (none by default); other engine logs
    stay in the main log; finsy's gNMI warning is filtered."""
    import logging

    from p4cs.controller.operator import setup_logging, log_effect
    from p4cs.csproc.effects import Log

    spliced = Log("info", "spliced", {"conn": 1, "client": "10.0.1.1:40000", "service": "web",
                                      "server": "all/10.0.2.1:80", "rule": None, "bytes": 78,
                                      "rtt_ms": 0.5, "bind_ms": 2.25})
    caplog.set_level(logging.INFO)
    setup_logging(None)
    log_effect(spliced)
    log_effect(Log("warning", "server down", {"server": "all/10.0.2.1:80"}))
    assert [r.getMessage() for r in caplog.records] == ["server down server=all/10.0.2.1:80"]
    path = tmp_path / "access.log"
    setup_logging(str(path))
    try:
        log_effect(spliced)
        logging.getLogger("finsy").warning("gNMI is not implemented")
    finally:
        setup_logging(None)
    assert path.read_text().endswith(" p4cs 10.0.1.1:40000 web - all/10.0.2.1:80 78 0.5 2.25\n")
    assert "gNMI" not in caplog.text


@pytest.mark.parametrize("req", [
    {"op": "server.add", "group": {}, "address": 5},
    {"op": "service.add", "address": "10.0.0.7:81", "name": [1], "persistence": {}},
    {"op": "service.edit", "address": None, "scheduler": 3},
    {"op": "set", "tcp": "x"},
    {"op": "restore", "text": "services: [", "path": {}},
    {"op": "restore"},
])
def test_bad_requests_are_one_line(cfg, req):
    from p4cs.controller.app import ControllerApp

    app = ControllerApp(cfg, Path("unused"))
    resp = asyncio.run(app.handle_control(req))
    assert not resp["ok"] and len(resp["errors"]) == 1 and "\n" not in resp["errors"][0]
    assert app.cfg is cfg
