"""The per-stage CPU probe of ``bench/slowpath_profile.py --stages`` (bench/stageprobe): what it
counts in a process, and the report the bench makes of two of its dumps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import slowpath_profile  # noqa: E402

CHILD = """
import asyncio, time
from p4cs.csproc import engine
from p4cs.controller import app
assert engine.Engine.handle.__name__ == "timed_handle"
assert app.ControllerApp._handle_packets.__name__ == "timed_packets"

async def busy():
    for _ in range(3):
        sum(range(20000))
        await asyncio.sleep(0.01)

asyncio.run(busy())
import gc
gc.collect()
time.sleep(1.2)                           # a dump after the run
"""


def probe_env(out: Path) -> dict[str, str]:
    """The environment slowpath_profile.py --stages gives its Lab."""
    path = [str(BENCH / "stageprobe")] + [p for p in os.environ.get("PYTHONPATH", "").split(
        os.pathsep) if p]
    return dict(os.environ, P4CS_STAGE_PROBE=str(out), PYTHONPATH=os.pathsep.join(path))


def test_the_probe_counts_the_event_loop_stages_of_a_p4cs_process(tmp_path):
    env = probe_env(tmp_path)
    # "controller" in its arguments: the probe installs itself at start-up, as in the Lab
    r = subprocess.run([sys.executable, "-c", CHILD, "controller"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (dump,) = tmp_path.glob("controller-*.json")
    totals = json.loads(dump.read_text())
    calls, ns = totals["loop task:busy"]
    assert calls == 4 and ns > 0          # the task's four steps, with their CPU
    assert totals["select"][0] >= 3
    assert totals["gc generation 2"][0] >= 1     # the collection, timed


def test_a_process_that_is_not_a_p4cs_role_is_left_alone(tmp_path):
    env = probe_env(tmp_path)
    code = ("import asyncio.events, sitecustomize; "
            "assert asyncio.events.Handle._run.__name__ == '_run'")
    r = subprocess.run([sys.executable, "-c", code, "status"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not list(tmp_path.iterdir())


def test_the_report_is_the_window_per_connection_with_the_batches_per_frame():
    before = {"controller": {"loop task:PacketPath.run": [10, 1_000_000],
                             "batch <=8": [2, 100_000], "batch <=8 frames": [12, 0]},
              "p4runtime_server": {"select": [5, 50_000]}}
    after = {"controller": {"loop task:PacketPath.run": [110, 21_000_000],
                            "loop task:ControllerApp._install": [10, 3_000_000],
                            "batch <=8": [12, 1_100_000], "batch <=8 frames": [62, 0],
                            "batch <=32": [4, 2_000_000], "batch <=32 frames": [100, 0]},
             "p4runtime_server": {"select": [105, 1_050_000]}}
    rep = slowpath_profile.stage_report(before, after, 100)
    ctl = rep["controller"]
    assert list(ctl) == ["loop task:PacketPath.run", "loop task:ControllerApp._install"]
    assert ctl["loop task:PacketPath.run"] == {"us_per_conn": 200.0, "calls_per_conn": 1.0,
                                               "us_per_call": 200.0}
    assert ctl["loop task:ControllerApp._install"]["us_per_call"] == 300.0
    assert rep["controller_batches"] == {
        "<=8": {"calls": 10, "frames": 50, "us_per_frame": 20.0},
        "<=32": {"calls": 4, "frames": 100, "us_per_frame": 20.0}}
    assert rep["p4runtime_server"]["select"]["us_per_conn"] == 10.0
    assert "p4runtime_server_batches" not in rep
