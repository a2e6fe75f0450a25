"""The check matrix on worker processes and on a Dask cluster (search/distribute.py): the
same results as the serial run, deterministic, interruptible.

Small on purpose: three profiles at depth 3 with page-table allocation failures on, which
still has violations at depths 1 to 3 (v5.18-rc1's direct_map_integrity at 2 needs the
faults), so the task's arguments all travel."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from invariants import INVARIANTS
from tests.helpers import from_a_shell

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("v5.18-rc1", "v5.13-powerpc", "v5.19")
ARGS = ("--depth", "3", "--faults", *(a for p in PROFILES for a in ("--profile", p)), "--json")


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "search", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def check(out: Path, *extra: str) -> dict[str, Any]:
    """The run's JSON, its exit code as `code` (13: declared violations deeper than 3)."""
    p = run(*ARGS, "--out", str(out), *extra)
    assert p.returncode in (0, 13), p.stdout + p.stderr
    return {**json.loads(p.stdout), "code": p.returncode}


def comparable(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything a result says but its wall time, with the trace by file name."""
    return [{**{k: v for k, v in r.items() if k != "seconds"},
             "trace": r["trace"] and Path(r["trace"]).name} for r in doc["results"]]


def traces(folder: Path) -> dict[str, str]:
    return {f.name: f.read_text(encoding="utf-8") for f in sorted(folder.glob("*.itf.json"))}


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("serial")
    return check(out, "--workers", "1"), out


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("parallel")
    return check(out, "--workers", "2"), out


def test_two_workers_give_the_serial_results(serial: tuple[dict[str, Any], Path],
                                             parallel: tuple[dict[str, Any], Path]) -> None:
    (s, s_out), (p, p_out) = serial, parallel
    assert comparable(p) == comparable(s)  # statuses, shortest depths, order, file names
    assert p["code"] == s["code"]
    got = {(r["profile"], r["invariant"]): (r["status"], r["depth"]) for r in p["results"]}
    assert got[("v5.18-rc1", "no_tail_as_base")] == ("violated", 3)
    assert got[("v5.18-rc1", "direct_map_integrity")] == ("violated", 2)  # with the faults
    assert got[("v5.19", "wx")] == ("violated", 1)
    # each profile's check starts z3 afresh (symbolic.fresh_z3), in this process or in a
    # worker's: every trace byte for byte, not only the first profile's
    assert traces(p_out) == traces(s_out)
    assert {k.split("__")[0] for k in traces(s_out)} == set(PROFILES)


def test_a_profile_alone_gives_the_trace_it_gives_in_the_matrix(
        serial: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    last = PROFILES[-1]  # checked after the other two in the serial run
    p = run("--depth", "3", "--faults", "--profile", last, "--json", "--out", str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    alone = traces(tmp_path)
    assert alone  # v5.19's wx at depth 1
    assert alone == {k: v for k, v in traces(serial[1]).items() if k.startswith(f"{last}__")}


def test_a_dask_cluster_gives_the_same_results(serial: tuple[dict[str, Any], Path],
                                               parallel: tuple[dict[str, Any], Path],
                                               tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        d = check(tmp_path, "--scheduler", cluster.scheduler_address)
    assert comparable(d) == comparable(serial[0]) and d["code"] == serial[0]["code"]
    # deterministic: every trace as the local workers found it, byte for byte
    assert traces(tmp_path) == traces(parallel[1])


def test_overrides_travel_to_the_workers() -> None:
    p = run("--profile", "v5.19", "--profile", "v6.0", "--set", "pack_fill=false",
            "--invariant", "no_exec_uninit", "--depth", "1", "--no-save", "--workers", "2",
            "--json")
    assert p.returncode == 12, p.stdout + p.stderr  # a violation under overrides
    assert [(r["profile"], r["status"], r["expected"]) for r in json.loads(p.stdout)["results"]] \
        == [("v5.19", "violated", None), ("v6.0", "violated", None)]


# ---- interrupts -------------------------------------------------------------------------


def _children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` and that run a task (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"search.distribute" in cmd:
            found.append(int(entry.name))
    return found


def test_interrupt_prints_what_the_workers_settled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Ctrl-C (as the handler raises it) when a task reports depth 2: by then that task
    # has settled its depth-1 violations, and it must hand them over before it stops
    import search.cli

    real_note = search.cli.Progress.note
    fired: list[str] = []

    def note(self: Any, label: str) -> None:
        if re.search(r"v6\.0: depth 2", label) and not fired:
            fired.append(label)
            raise KeyboardInterrupt
        real_note(self, label)

    monkeypatch.setattr(search.cli.Progress, "note", note)
    before = signal.getsignal(signal.SIGINT)
    code = search.cli.main(["--profile", "v5.19", "--profile", "v6.0", "--depth", "8",
                            "--workers", "2", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert fired and code == 130, err
    # progress lines come every 15 s off a terminal once a run passes 5 s (a loaded machine)
    said = [ln for ln in err.splitlines() if not ln.startswith("allocheck: progress: ")]
    assert len(said) == 1 and "Traceback" not in err, err
    m = re.search(r"interrupted: (\d+) of (\d+) results finished", err)
    assert m and int(m[2]) == 2 * len(INVARIANTS) and 2 <= int(m[1]) < 2 * len(INVARIANTS), err
    rows = [line for line in out.splitlines() if line.startswith(("v5.19 ", "v6.0 "))]
    assert len(rows) == int(m[1])
    assert any(line.startswith("v6.0 ") and "violated at depth 1" in line for line in rows)
    assert len(list(tmp_path.glob("*.itf.json"))) == sum("violated" in r for r in rows)
    assert signal.getsignal(signal.SIGINT) is before
    assert _children_of(os.getpid()) == []  # every task's process is gone


def test_ctrl_c_stops_every_worker(tmp_path: Path) -> None:
    # the real signal, to the command only (not its process group): it must stop the
    # tasks' processes itself, print what they settled and exit 130
    p = subprocess.Popen(from_a_shell("-m", "search", "--depth", "12", "--workers", "2",
                                      "--profile", "v5.19", "--profile", "v6.0",
                                      "--out", str(tmp_path)),
                         cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                         start_new_session=True)
    try:
        t0 = time.monotonic()
        while len(_children_of(p.pid)) < 2 and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        kids = _children_of(p.pid)
        assert len(kids) == 2
        time.sleep(1.0)
        os.kill(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("allocheck: interrupted: "), err
    assert "Traceback" not in err
    assert all(not Path(f"/proc/{k}").exists() for k in kids)


# ---- tasks and their failures -----------------------------------------------------------


def test_a_task_is_plain_data() -> None:
    from search.distribute import Task, plan

    (t,) = plan(["v5.19"], ["wx"], 3, "bmc", {"pack_fill": False}, {"frames": 4}, True, False,
                2.5)
    assert Task.from_json(json.loads(json.dumps(t.to_json()))) == t


def test_a_failing_task_is_an_error_not_a_result() -> None:
    from search.distribute import Task, run_local

    bad = Task(0, "v9.99", ("wx",), 1, "bmc", {}, {"frames": 4, "hpage": 2, "areas": 2}, False)
    outputs: list[dict[str, Any]] = []
    run_local([bad], 1, lambda task, out: outputs.append(out))
    (out,) = outputs
    assert out["results"] == {} and not out["interrupted"]
    assert out["error"]["kind"] == "crash" and "v9.99" in out["error"]["message"]


@pytest.mark.parametrize("argv,says", [
    (["--workers", "0"], "workers must be between 1"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers is for this machine"),
    (["--scheduler", " "], "name a Dask scheduler"),
])
def test_bad_worker_options_are_usage_errors(argv: list[str], says: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from search.cli import main

    assert main([*argv, "--depth", "1", "--no-save"]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_scheduler_without_dask_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from search.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    assert main(["--scheduler", "tcp://127.0.0.1:1", "--depth", "1", "--no-save"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'allocheck[cluster]'" in err and err.count("\n") == 1
