"""Regression tests for issue 12 (hardening the command line and trace files): one test,
or a few, per defect, each failing before its fix. In-process through `search.cli.main`
where that is enough, a subprocess where the process itself matters (exit at start-up,
a full stdout). No wall-clock assertion: where time is involved, a fake clock or an
outcome that only a working limit produces."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import stat
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from model.system import System
from search.itf import Trace, TraceError, loads, save, to_itf, trace_from_steps

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
    from search.graph import render_text

    text = render_text(dataclasses.replace(tail, engine=f"bmc{ESC}\nFORGED"))
    assert "\x1b" not in text and "\x07" not in text
    assert "FORGED" in text.splitlines()[0]  # on the header line, not a line of its own


def test_printable_escapes_what_a_terminal_acts_on() -> None:
    from search.naming import one_line, printable

    assert printable("plain text, é, 漢") == "plain text, é, 漢"
    assert printable("a\x1b[2J\nb\ud800\u202e\x9b") == "a\\x1b[2J\\x0ab\\ud800\\u202e\\x9b"
    assert printable("x" * 100, 10) == "x" * 10 + "..."
    line = one_line("bad value " + "y" * 10000 + "\nsecond")
    assert "\n" not in line and len(line) < 500


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
    from search.graph import MAX_PNG_STEPS, causal_slice, png_steps, render_png

    trace = _long_walk("v5.19", 200)
    keep, note = png_steps(trace, causal_slice(trace))
    assert len(keep) == MAX_PNG_STEPS and keep[0] == 0 and keep[-1] == 200
    assert "of 200 steps drawn" in note
    w, h = _png_size(render_png(trace, tmp_path / "long.png"))
    assert w <= 2.6 * 100 * (MAX_PNG_STEPS + 2) and h <= 1000, (w, h)


def test_png_keeps_the_slice_of_a_long_violation(stale: Trace) -> None:
    from search.graph import causal_slice, png_steps

    sl = causal_slice(stale)
    keep, note = png_steps(stale, sl, limit=3)
    assert note and keep == [0, *sorted(sl)[-2:]]
    assert png_steps(stale, sl) == ([0, 1, 2, 3, 4], "")


# ---- documentation and file modes ---------------------------------------------------------


def test_mode_of_new_files_follows_the_umask(tmp_path: Path, tail: Trace) -> None:
    old = os.umask(0o022)
    try:
        p = save(tail, tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
