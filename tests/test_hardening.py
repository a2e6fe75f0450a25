"""Regression tests for issue 12 (hardening the command line and trace files): one test,
or a few, per defect, each failing before its fix. In-process through `search.cli.main`
where that is enough, a subprocess where the process itself matters (exit at start-up,
a full stdout). No wall-clock assertion: where time is involved, a fake clock or an
outcome that only a working limit produces."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import re
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from invariants import INVARIANTS
from model.system import System
from search.traces.itf import Trace, TraceError, loads, save, to_itf, trace_from_steps
from tests.helpers import RESET_SIGINT

ROOT = Path(__file__).resolve().parent.parent
ESC = "\x1b]0;pwned\x07\x1b[2J"


def main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from search.cli import main as cli_main

    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_clean_line(err: str) -> None:
    """Exactly one line on stderr, no traceback, nothing a terminal would act on."""
    assert err.count("\n") == 1 and err.endswith("\n"), repr(err)
    assert "Traceback" not in err
    assert all(c.isprintable() for c in err[:-1]), repr(err)
    assert len(err) < 500, len(err)


def doc_of(trace: Trace) -> dict[str, Any]:
    return to_itf(trace)


def write_doc(path: Path, doc: dict[str, Any] | str) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", head[16:24])
    return w, h


def run(*args: str, cwd: Path = ROOT, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          timeout=120, **{"capture_output": True, **kw})


# ---- defect 2: text from a trace reaches the terminal raw ------------------------------


@pytest.mark.parametrize("field,value", [
    ("engine", f"bmc{ESC}\nFORGED: all results as declared"),
    ("engine", "\ud800"),
    ("engine", "bmc\u202e"),
    ("description", "fine\nallocheck: forged line"),
    ("allocheck-version", "0.1\r\x1b[2K"),
    ("engine", "x" * 5000),
])
def test_trace_strings_must_be_printable(tmp_path: Path, tail: Trace, field: str,
                                         value: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = doc_of(tail)
    doc["#meta"][field] = value
    text = json.dumps(doc)  # \ud800 stays an escape in the JSON text, as a hostile file has it
    with pytest.raises(TraceError) as e:
        loads(text, "t.itf.json")
    assert "\n" not in str(e.value) and all(c.isprintable() for c in str(e.value))
    f = write_doc(tmp_path / "t.itf.json", text)
    for sub in (["show", str(f)], ["show", str(f), "--slice"], ["replay", str(f)]):
        code, out, err = main(capsys, *sub)
        assert code == 2, (sub, code, err)
        one_clean_line(err)
        assert out == ""


def test_render_text_escapes_a_hostile_engine(tail: Trace) -> None:
    from search.traces.graph import render_text

    text = render_text(dataclasses.replace(tail, engine=f"bmc{ESC}\nFORGED"))
    assert "\x1b" not in text and "\x07" not in text
    assert "FORGED" in text.splitlines()[0]  # on the header line, not a line of its own


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    from search.traces.naming import one_line, printable

    assert printable("plain text, é, 漢") == "plain text, é, 漢"
    assert printable("a\x1b[2J\nb\ud800\u202e\x9b") == "a\\x1b[2J\\x0ab\\ud800\\u202e\\x9b"
    assert printable("x" * 100, 10) == "x" * 10 + "..."
    line = one_line("bad value " + "y" * 10000 + "\nsecond")
    assert "\n" not in line and len(line) < 500


def test_a_path_with_control_characters_is_printed_escaped(
        tmp_path: Path, tail: Trace, capsys: pytest.CaptureFixture[str]) -> None:
    src = save(tail, tmp_path)
    hostile = tmp_path / f"t{ESC}\nFORGED.itf.json"
    hostile.write_bytes(src.read_bytes())
    code, out, err = main(capsys, "replay", str(hostile))
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert not any(line.startswith("FORGED") for line in out.splitlines())


# ---- defect 3: integers over 4,300 digits ----------------------------------------------


@pytest.mark.parametrize("where", ["seed", "bigint-seed", "state", "index"])
def test_huge_integers_are_bad_input(tmp_path: Path, tail: Trace, where: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    big = "9" * 5000
    doc = doc_of(tail)
    if where == "bigint-seed":
        doc["#meta"]["seed"] = {"#bigint": big}
        text = json.dumps(doc)
    else:
        marker = 123456789
        if where == "seed":
            doc["#meta"]["seed"] = marker
        elif where == "state":
            doc["states"][1]["pages"]["refcount"][0] = marker
        else:
            doc["states"][2]["#meta"]["index"] = marker
        text = json.dumps(doc).replace(str(marker), big)
    with pytest.raises(TraceError, match="digits"):
        loads(text, "t.itf.json")
    f = write_doc(tmp_path / "t.itf.json", text)
    code, _, err = main(capsys, "show", str(f))
    assert code == 2
    one_clean_line(err)


# ---- defect 4: --bounds frames=4,hpage=0 -----------------------------------------------


@pytest.mark.parametrize("spec", ["frames=4,hpage=0", "hpage=0", "areas=0,frames=4",
                                  "frames=" + "9" * 5000, "hpage=٣", "hpage=2,hpage=2",
                                  "frames=-4,hpage=-2"])
def test_bad_bounds_are_usage_errors(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    from model.bounds import Bounds, BoundsError

    with pytest.raises(BoundsError):
        Bounds.parse(spec)
    code, _, err = main(capsys, "--bounds", spec, "--depth", "0", "--no-save",
                        "--profile", "v5.19", "--invariant", "wx")
    assert code == 2
    one_clean_line(err)


# ---- defect 6: every error one line, echoed values cut ---------------------------------


@pytest.mark.parametrize("argv", [
    ["replay", "no\nsuch"],
    ["show", "no\nsuch\x1b[2J"],
    ["--out", "a\nb/c", "--depth", "0"],
    ["list", "\n"],
    ["--profile", "v\n" + "9" * 20000, "--depth", "0", "--no-save"],
    ["--invariant", "x" * 20000, "--depth", "0", "--no-save"],
    ["--set", "pack_fill=" + "z" * 20000, "--depth", "0", "--no-save"],
    ["--depth", "9" * 5000],
    ["--seed", "9" * 5000, "--depth", "0", "--no-save"],
    ["--timeout", "1e999", "--depth", "0", "--no-save"],
    ["--timeout", "nan", "--depth", "0", "--no-save"],
    ["--engine", "bmc\nbfs"],
    ["--no-such-option\n" + "q" * 10000],
])
def test_errors_are_one_short_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = main(capsys, *argv)
    assert code == 2, (code, err)
    one_clean_line(err)


# ---- defect 9: unknown results get their own exit code ---------------------------------


def test_exit_code_precedence() -> None:
    from search.cli import Row, exit_code
    from search.result import HOLDS, UNKNOWN, VIOLATED, Result

    def row(status: str, expected: str | None) -> Row:
        return Row("p", "i", Result("i", "bmc", status, 1), expected, False)

    assert exit_code([row(HOLDS, HOLDS), row(UNKNOWN, HOLDS)]) == 3
    assert exit_code([row(UNKNOWN, VIOLATED)]) == 3  # not refuted: unknown, not 13
    assert exit_code([row(UNKNOWN, None)]) == 3
    assert exit_code([row(HOLDS, VIOLATED), row(UNKNOWN, HOLDS)]) == 13
    assert exit_code([row(VIOLATED, HOLDS), row(UNKNOWN, HOLDS)]) == 12
    assert exit_code([row(VIOLATED, VIOLATED), row(HOLDS, HOLDS)]) == 0


def test_a_run_with_every_result_unknown_is_not_exit_0(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # the case (BFS at the wide scope to depth 30 with --timeout), with an
    # exploration that never ends, so that no result can be settled whatever the model
    import search.engines.bfs

    def endless(system: Any, invariants: list[str], depth: int, timeout: Any = None,
                progress: Any = None, **kw: Any) -> Any:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            progress(1, ", ".join(invariants))
        raise AssertionError("--timeout did not stop the search")

    monkeypatch.setattr(search.engines.bfs, "check", endless)
    code, out, _ = main(capsys, "--profile", "v5.19", "--bounds", "wide", "--depth", "30",
                        "--engine", "bfs", "--timeout", "0.3", "--no-save", "--json")
    assert code == 3
    assert {r["status"] for r in json.loads(out)["results"]} == {"unknown"}


# ---- defect 1: PNG through a planted symlink, and not atomic ---------------------------


def test_png_never_writes_through_a_planted_link(tmp_path: Path, tail: Trace,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    d, v = tmp_path / "d", tmp_path / "v"
    d.mkdir()
    v.mkdir()
    (v / "p").write_text("precious\n")
    t = save(tail, d)
    link = t.with_name(t.name.removesuffix(".itf.json") + ".png")
    link.symlink_to(Path("..") / "v" / "p")
    code, _, err = main(capsys, "show", str(t), "--format", "png")
    assert code == 0, err
    assert (v / "p").read_text() == "precious\n"
    assert not link.is_symlink() and link.is_file()
    _png_size(link)
    assert sorted(p.name for p in d.iterdir()) == sorted([t.name, link.name])  # no temporary


def test_png_on_a_full_disk_leaves_the_old_file(tmp_path: Path, tail: Trace,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    import search.traces.itf

    t = save(tail, tmp_path)
    png = tmp_path / "out.png"
    png.write_bytes(b"old picture")

    def full(fd: int, data: bytes) -> None:
        os.close(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(search.traces.itf, "_fill", full)
    code, _, err = main(capsys, "show", str(t), "--format", "png", "--output", str(png))
    assert code == 74
    one_clean_line(err)
    assert png.read_bytes() == b"old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([t.name, png.name])


@pytest.mark.parametrize("target", ["folder", "/dev/null", "fifo"])
def test_png_refuses_a_folder_or_a_device(tmp_path: Path, tail: Trace, target: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    t = save(tail, tmp_path)
    if target == "folder":
        out = tmp_path / "pictures"
        out.mkdir()
    elif target == "fifo":
        out = tmp_path / "fifo"
        os.mkfifo(out)
    else:
        out = Path(target)
    before = os.lstat(out).st_mode
    code, _, err = main(capsys, "show", str(t), "--format", "png", "--output", str(out))
    assert code == 2
    one_clean_line(err)
    assert os.lstat(out).st_mode == before  # still what it was (root could replace /dev/null)


# ---- defect 5: output paths --------------------------------------------------------------


def _no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if a check starts: the output location must be refused before the search."""
    import search.cli

    def boom(name: str) -> Any:
        raise AssertionError("the search ran although the output folder is unusable")

    monkeypatch.setattr(search.cli, "_engine", boom)


@pytest.mark.parametrize("kind", ["dangling", "too-long", "file", "missing-parent", "empty"])
def test_unusable_out_is_refused_before_the_search(
        tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _no_engine(monkeypatch)
    out = {"dangling": tmp_path / "link", "too-long": tmp_path / ("x" * 300),
           "file": tmp_path / "f", "missing-parent": tmp_path / "no" / "such",
           "empty": ""}[kind]
    if kind == "dangling":
        out.symlink_to(tmp_path / "nowhere")  # type: ignore[union-attr]
    if kind == "file":
        out.write_text("")  # type: ignore[union-attr]
    code, _, err = main(capsys, "--profile", "v5.1", "--invariant", "wx", "--depth", "1",
                        "--out", str(out))
    assert code == 2, err
    one_clean_line(err)
    assert not (tmp_path / "nowhere").exists()


def test_unwritable_out_is_an_os_error_before_the_search(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import search.cli

    _no_engine(monkeypatch)

    def denied(*a: Any, **kw: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    # root ignores a read-only mode, so the refusal is simulated where the probe creates
    monkeypatch.setattr(search.cli.tempfile, "mkstemp", denied)
    code, _, err = main(capsys, "--profile", "v5.1", "--invariant", "wx", "--depth", "1",
                        "--out", str(tmp_path))
    assert code == 74
    one_clean_line(err)
    assert "Permission denied" in err


def test_results_are_printed_when_saving_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import search.traces.itf

    def full(trace: Trace, out: Any) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(search.traces.itf, "save", full)
    code, out, err = main(capsys, "--profile", "v5.1", "--invariant", "wx",
                          "--invariant", "no_exec_uninit", "--depth", "1", "--out", str(tmp_path))
    assert code == 74
    one_clean_line(err)
    assert "No space left on device" in err
    assert "violated at depth 1" in out and "(not saved)" in out
    assert "2 results" in out


def test_list_to_a_full_stdout_is_not_an_internal_error() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        p = run("list", stdout=full, capture_output=False, stderr=subprocess.PIPE)
    assert p.returncode == 74, p.stderr
    one_clean_line(p.stderr)


# ---- minor: --profile twice, --out "", special files as traces ---------------------------


def test_repeated_profile_runs_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = main(capsys, "--profile", "v5.1", "--profile", "v5.1", "--invariant", "wx",
                        "--depth", "1", "--no-save", "--json")
    assert code == 0
    assert len(json.loads(out)["results"]) == 1


@pytest.mark.parametrize("sub", ["check", "catalog"])
def test_empty_out_is_an_error(sub: str, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    _no_engine(monkeypatch)
    argv = ["catalog", "--out", ""] if sub == "catalog" else ["--out", "", "--depth", "0"]
    code, _, err = main(capsys, *argv)
    assert code == 2
    one_clean_line(err)


@pytest.mark.parametrize("kind,says", [("dir", "folder"), ("fifo", "FIFO"),
                                       ("/dev/zero", "character device")])
def test_special_files_as_traces_are_named(tmp_path: Path, kind: str, says: str) -> None:
    if kind == "dir":
        path = str(tmp_path)
    elif kind == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    else:
        path = kind
    for sub in ("show", "replay"):
        # a subprocess: reading a FIFO or /dev/zero by mistake would block or never end
        p = run(sub, path)
        assert p.returncode == 2, p.stderr
        one_clean_line(p.stderr)
        assert says in p.stderr and "no such file" not in p.stderr


# ---- defect 7: interrupts ------------------------------------------------------------------


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, when: str) -> list[Any]:
    """Ctrl-C (as the handler raises it) the first time the progress label contains `when`;
    records the SIGINT handler in force while the results are printed."""
    import search.cli

    seen: list[Any] = []
    real_note = search.cli.Progress.note
    real_table = search.cli.print_table

    def note(self: Any, label: str) -> None:
        if when in label and not seen:
            seen.append("fired")
            raise KeyboardInterrupt
        real_note(self, label)

    def table(*a: Any, **kw: Any) -> None:
        seen.append(signal.getsignal(signal.SIGINT))
        real_table(*a, **kw)

    monkeypatch.setattr(search.cli.Progress, "note", note)
    monkeypatch.setattr(search.cli, "print_table", table)
    return seen


def _finished(err: str) -> tuple[int, int, int]:
    """(finished, total, saved) from the one line an interrupted run prints."""
    m = re.search(r"interrupted: (\d+) of (\d+) results finished", err)
    saved = re.search(r"(\d+) traces? saved", err)
    assert m, err
    return int(m[1]), int(m[2]), int(saved[1]) if saved else 0


def test_interrupt_prints_every_settled_result_per_invariant(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # v5.18 violates no_exec_uninit and no_stale_exec at depth 1 (declared); interrupted
    # at depth 2, with its other invariants pending, what was settled must be printed
    before = signal.getsignal(signal.SIGINT)
    seen = _interrupt_at(monkeypatch, "v5.18: depth 2")
    code, out, err = main(capsys, "--profile", "v5.18", "--depth", "6", "--out", str(tmp_path))
    assert code == 130
    one_clean_line(err)
    finished, total, saved = _finished(err)
    assert total == len(INVARIANTS) and 1 <= finished < len(INVARIANTS)
    rows = [line for line in out.splitlines() if line.startswith("v5.18 ")]
    assert len(rows) == finished
    violated = [line for line in rows if "violated at depth 1" in line]
    assert violated and saved == len(violated) == len(list(tmp_path.glob("*.itf.json")))
    assert seen[-1] is signal.SIG_IGN  # a second Ctrl-C while printing is ignored
    assert signal.getsignal(signal.SIGINT) is before  # and restored for an in-process caller


def test_interrupted_catalog_reports_what_it_saved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _interrupt_at(monkeypatch, "v5.13-powerpc: building")  # after v5.1, the first profile
    code, out, err = main(capsys, "catalog", "--out", str(tmp_path))
    assert code == 130
    one_clean_line(err)
    finished, _, saved = _finished(err)
    files = list(tmp_path.glob("*.itf.json"))
    assert finished >= 1 and saved == len(files) >= 1
    assert all(f.name in out for f in files)


def test_interrupt_is_130_in_any_command(tmp_path: Path, tail: Trace,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import search.traces.itf

    def interrupted(*a: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt

    f = save(tail, tmp_path)
    monkeypatch.setattr(search.traces.itf, "loads", interrupted)
    for sub in ("show", "replay"):
        code, _, err = main(capsys, sub, str(f))
        assert code == 130
        one_clean_line(err)


def test_an_interrupt_wrapped_by_ctypes_is_still_an_interrupt(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Ctrl-C while ctypes converts an argument for z3 surfaces as ctypes.ArgumentError
    import ctypes

    import search.cli

    def note(self: Any, label: str) -> None:
        search.cli._SIG.interrupted = True  # what the handler records before raising
        raise ctypes.ArgumentError("argument 2: KeyboardInterrupt")

    monkeypatch.setattr(search.cli.Progress, "note", note)
    code, _, err = main(capsys, "--profile", "v5.1", "--invariant", "wx", "--depth", "1",
                        "--no-save")
    assert code == 130
    one_clean_line(err)


def test_signal_in_a_destructor_is_deferred() -> None:
    from search.cli import _in_destructor

    class Z3Like:
        def __del__(self) -> None:
            flags.append(_in_destructor(sys._getframe()))

    flags: list[bool] = []
    Z3Like()
    assert flags == [True]
    assert not _in_destructor(sys._getframe())


_START_UP = RESET_SIGINT + """
import importlib.abc, os, runpy, signal, sys
class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while this module is imported
        return None
sys.meta_path.insert(0, Hook())
sys.argv = ["search", "--depth", "1", "--no-save"]
runpy.run_module("search", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("module", ["search.progress", "invariants", "z3"])
def test_interrupt_during_start_up(module: str) -> None:
    # search.progress: while search.cli itself is imported; invariants and z3: in main
    p = subprocess.run([sys.executable, "-c", _START_UP.format(module=module)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 130, p.stderr
    one_clean_line(p.stderr)


# ---- defect 8: PNG cost bounded for long traces ------------------------------------------


def _long_walk(profile: str, n: int, seed: int = 0) -> Trace:
    system = System.build(profile)
    rng = random.Random(seed)
    s, steps = system.initial(), []
    while len(steps) < n:  # never into a state with nothing enabled
        ok = [i for i in system.enabled(s) if any(True for _ in system.enabled(system.step(s, i)))]
        inst = rng.choice(ok)
        steps.append(inst)
        s = system.step(s, inst)
    return trace_from_steps(system, steps, None, "test")


def test_png_of_a_long_trace_is_bounded(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from search.traces.graph import MAX_PNG_STEPS, causal_slice, png_steps, render_png

    trace = _long_walk("v5.19", 200)
    keep, note = png_steps(trace, causal_slice(trace))
    assert len(keep) == MAX_PNG_STEPS and keep[0] == 0 and keep[-1] == 200
    assert "of 200 steps drawn" in note
    w, h = _png_size(render_png(trace, tmp_path / "long.png"))
    assert w <= 2.6 * 100 * (MAX_PNG_STEPS + 2) and h <= 1000, (w, h)


def test_png_keeps_the_slice_of_a_long_violation(stale: Trace) -> None:
    from search.traces.graph import causal_slice, png_steps

    sl = causal_slice(stale)
    keep, note = png_steps(stale, sl, limit=3)
    assert note and keep == [0, *sorted(sl)[-2:]]
    assert png_steps(stale, sl) == ([0, 1, 2, 3, 4], "")


# ---- defect 10: --timeout bounds the wall time; progress lines off a terminal ------------


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Pipe:
    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_progress_lines_when_not_a_terminal() -> None:
    from search.progress import Progress

    clock, pipe = _Clock(), _Pipe()
    p = Progress(10, stream=pipe, clock=clock, quiet=5.0, every=15.0)
    p.note("v5.19: depth 1 wx")
    assert pipe.text == ""  # quiet for a short run
    clock.t = 6.0
    p.advance()
    clock.t = 7.0
    p.note("v5.19: depth 2 wx")
    clock.t = 22.0
    p.note("v5.19: depth 3 wx")
    p.close()
    lines = pipe.text.splitlines()
    assert len(lines) == 2 and "\r" not in pipe.text
    assert lines[0].startswith("allocheck: progress: 1/10") and "depth 1 wx" in lines[0]
    assert "depth 3 wx" in lines[1]


def test_timeout_bounds_building_the_encoding(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import search.engines.bmc

    def endless_build(system: Any) -> Any:
        # an encoding that takes "forever": only a wall-time limit ends this; after 60 s
        # the test fails instead of hanging
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            sum(range(1000))
        raise AssertionError("--timeout did not stop building the encoding")

    monkeypatch.setattr(search.engines.bmc.Encoding, "build", staticmethod(endless_build))
    code, out, _ = main(capsys, "--profile", "v5.19", "--invariant", "wx", "--depth", "3",
                        "--timeout", "0.3", "--no-save", "--json")
    assert code == 3
    (r,) = json.loads(out)["results"]
    assert r["status"] == "unknown" and "encoding included" in r["detail"]


def test_timeout_help_says_wall_time(capsys: pytest.CaptureFixture[str]) -> None:
    from search.cli import _check_parser

    help_text = " ".join(_check_parser().format_help().split())
    assert "wall time of each profile's check" in help_text


# ---- documentation and file modes ---------------------------------------------------------


def test_documented_exit_codes_are_in_the_readme() -> None:
    from search.cli import EXIT_CODES

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code in EXIT_CODES:
        assert f"**{code}**" in readme, code


def test_mode_of_new_files_follows_the_umask(tmp_path: Path, tail: Trace) -> None:
    old = os.umask(0o022)
    try:
        p = save(tail, tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


# ---- the run command, and names no command line can hold -----------------------------------


def test_run_is_dispatched_with_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    scenarios = sorted((ROOT / "scenarios").glob("*.calls"))
    if not scenarios:
        pytest.skip("no scenarios")
    code, out, err = main(capsys, "run", str(scenarios[0]), "--profile", "v5.19", "--quiet")
    assert code in (0, 1, 12), err
    assert "v5.19" in out
    for argv in (["run", "no\nsuch.calls"], ["run", str(scenarios[0]), "--profile", "v9\x1b"],
                 ["run", str(scenarios[0]), "--interleave", "x" * 5000]):
        code, _, err = main(capsys, *argv)
        assert code == 2, (argv, err)
        one_clean_line(err)


def test_help_returns_0_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["show", "-h"], ["list", "--help"]):
        code, out, err = main(capsys, *argv)
        assert code == 0 and "usage:" in out and err == ""


@pytest.mark.parametrize("argv", [["show", "a\0b"], ["replay", "a\0b"],
                                  ["--out", "a\0b", "--depth", "0"]])
def test_a_nul_in_a_name_is_bad_input(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = main(capsys, *argv)
    assert code == 2
    one_clean_line(err)
