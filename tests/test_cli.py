"""The command line: results, JSON contract, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_history_matches_and_json_contract(tmp_path: Path) -> None:
    p = run("--depth", "3", "--profile", "v5.18-rc1", "--profile", "v5.19",
            "--invariant", "no_tail_as_base", "--invariant", "no_exec_uninit",
            "--json", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    fields = {"profile", "invariant", "engine", "status", "depth", "expected", "matches",
              "trace", "seconds"}
    got = {(r["profile"], r["invariant"]): r for r in doc["results"]}
    for r in doc["results"]:
        assert fields <= set(r)
    tail = got[("v5.18-rc1", "no_tail_as_base")]
    assert (tail["status"], tail["depth"], tail["matches"]) == ("violated", 3, True)
    assert Path(tail["trace"]).is_file()
    assert got[("v5.19", "no_tail_as_base")]["status"] == "holds"
    assert got[("v5.19", "no_exec_uninit")]["matches"] is True  # kprobes: declared from 5.2
    assert got[("v5.18-rc1", "no_exec_uninit")]["depth"] == 1


def test_undeclared_violation_exits_12() -> None:
    p = run("--depth", "1", "--profile", "v5.19", "--set", "pack_fill=false",
            "--invariant", "no_exec_uninit", "--no-save")
    assert p.returncode == 12, p.stdout + p.stderr
    assert "violated at depth 1" in p.stdout


def test_declared_violation_beyond_the_depth_exits_13() -> None:
    p = run("--depth", "2", "--profile", "v5.18.y", "--invariant", "no_stale_exec", "--no-save")
    assert p.returncode == 13, p.stdout + p.stderr
    assert "holds to depth 2" in p.stdout


def test_bfs_engine_agrees_on_a_shallow_case() -> None:
    p = run("--depth", "3", "--engine", "bfs", "--profile", "v5.18-rc1",
            "--invariant", "no_tail_as_base", "--no-save", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)["results"][0]
    assert (r["status"], r["depth"], r["engine"]) == ("violated", 3, "bfs")


@pytest.mark.parametrize("args", [
    ("--depth", "-1"), ("--depth", "1000"), ("--depth", "ten"), ("--profile", "v9.9"),
    ("--invariant", "no_such"), ("--set", "nonsense=1"), ("--set", "pack_fill=maybe"),
    ("--set", "pack_fill"), ("--bounds", "frames=3"), ("--bounds", "hpage=zero"),
    ("--engine", "tlc"), ("--timeout", "-5"), ("--out", "/nonexistent/dir/x"),
    ("replay", "/nonexistent.itf.json"), ("show", "/nonexistent.itf.json"),
    ("replay",), ("--no-such-option",),
])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    # a depth of 0 keeps the one case that might be accepted by mistake from running long
    extra = ("--no-save",) if args and args[0] not in ("replay", "show") else ()
    if "--depth" not in args and extra:
        extra += ("--depth", "0")
    p = run(*args, *extra)
    assert p.returncode == 2, (args, p.returncode, p.stderr)
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr


def test_corrupted_trace_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.itf.json"
    bad.write_text('{"#meta": {"format": "ITF"}, "vars": [], "states": [')
    for sub in ("replay", "show"):
        p = run(sub, str(bad))
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr


def test_replay_reproduces_and_a_fix_does_not(tmp_path: Path) -> None:
    p = run("--depth", "3", "--profile", "v5.18-rc1", "--invariant", "no_tail_as_base",
            "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    (trace,) = tmp_path.glob("*.itf.json")
    assert run("replay", str(trace)).returncode == 0
    fixed = run("replay", str(trace), "--profile", "v5.18")
    assert fixed.returncode == 1
    assert "NOT reproduced" in fixed.stdout


def test_list_names_everything() -> None:
    p = run("list")
    assert p.returncode == 0
    for word in ("v5.18-rc1", "no_tail_as_base", "bpf_prog_pack_alloc", "huge_vmalloc"):
        assert word in p.stdout
