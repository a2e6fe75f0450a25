"""Property-based fuzz of the trace loader and the command line (issue 12).

Inputs: structure-aware mutations of the real traces in counterexamples/*.itf.json (a
value replaced by a hostile one, a key dropped or added, entries duplicated or swapped,
calls renamed, then the text truncated, a byte inserted, a number made 5,000 digits long
...), and command lines whose arguments are drawn from each option's domain and from
hostile strings (escape sequences, newlines, lone surrogates, huge numbers, empty and
over-long names). Everything runs in-process through `search.cli.main`.

Asserted for every case: the exit code is a documented one (never 255, never 130), at
most one line on stderr, no traceback, nothing on stdout a terminal would act on, and no
file written outside the case's temporary folder (watched with an audit hook, which sees
every open for writing, rename, link, mkdir, chmod and unlink of the process).

Hypothesis runs derandomized (a fixed seed: the same cases on every run) with no example
database; the whole file takes well under 60 seconds.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from invariants import INVARIANTS
from model.actions import ACTIONS
from model.profiles import FLAG_INFO, PROFILES
from search.cli import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, SUBCOMMANDS
from search.cli import main as cli_main
from search.traces.itf import Trace, TraceError, loads, lookup, to_itf, trace_from_steps
from search.traces.naming import LINE_LIMIT

ROOT = Path(__file__).resolve().parent.parent
CATALOG = sorted((ROOT / "counterexamples").glob("*.itf.json"))
SCENARIOS = sorted((ROOT / "scenarios").glob("*.calls"))
ALLOWED = EXIT_CODES - {EXIT_INTERNAL, EXIT_INTERRUPTED}


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, derandomize=True, database=None, deadline=None,
                    print_blob=False, suppress_health_check=list(HealthCheck))


# ---- the seeds: the catalog's traces ------------------------------------------------------


def _rebuilt(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A catalog trace whose recorded states no longer match the model (the model moved
    on) re-recorded from its calls, so that mutations reach past the first state."""
    from model.bounds import Bounds
    from model.system import System

    try:
        m = doc["#meta"]
        system = System.build(m["profile"], bounds=Bounds(**m["bounds"]), faults=m["faults"],
                              overrides=m["overrides"])
        steps = []
        for st_ in doc["states"][1:]:
            inst = lookup(system, st_["#meta"]["action"], st_["#meta"]["params"])
            if isinstance(inst, str):
                return None
            steps.append(inst)
        trace = trace_from_steps(system, steps, m["invariant"], m["engine"], m["seed"])
    except Exception:
        return None
    return to_itf(trace)


@functools.cache
def seeds() -> tuple[str, ...]:
    """The catalog traces as JSON text, each one that the current model loads."""
    out = []
    for path in CATALOG:
        text = path.read_text(encoding="utf-8")
        try:
            loads(text, path.name)
        except TraceError:
            doc = _rebuilt(json.loads(text))
            if doc is None:
                continue
            text = json.dumps(doc, indent=1)
        out.append(text)
    return tuple(out)


def test_the_seeds_load() -> None:
    assert CATALOG, "no catalog traces to fuzz"
    assert len(seeds()) >= len(CATALOG) // 2, "most catalog traces should seed the fuzz"
    for text in seeds():
        assert isinstance(loads(text), Trace)


# ---- hostile values -------------------------------------------------------------------------

HOSTILE_TEXT = [
    "", " ", "-", "--", "\n", "a\nb", "\r", "\t", "\x00", "\x1b[2J\x1b]0;pwned\x07", "\x9b31m",
    "\ud800", "\udcff", "\u202e", "\u2028", "\ufeff", "x" * 5000, "9" * 5000, "-1", "65",
    "1e999", "nan", "inf", "0x10", "\uff11", "\u0663", "../x", ".", "./", "/dev/null",
    "/dev/full", "/nonexistent/dir/x", "=", "a=b=c", "frames=4,hpage=0", "hpage=0", "%s%n",
    "{}", "[]", "null", "true", "v5.19\n", "wx ", "--help", "-h", "--depth",
]

hostile_text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=12))

hostile_value = st.one_of(
    hostile_text,
    st.sampled_from([0, -1, 1, 2, 3, 64, 2**31, 2**53, 2**53 + 1, 2**63, 2**64, -(2**63),
                     10**39, 10**41, 0.5, -0.0, 1e308, True, False, None]),
    st.sampled_from([[], {}, [[]], [None], {"#bigint": "7"}, {"#bigint": "9" * 60},
                     {"#bigint": "-0"}, {"#bigint": "1e3"}, {"#bigint": " 1"}, {"#bigint": 5},
                     {"#tup": []}, {"#tup": [1, 2]}, {"#set": []}, {"#map": []},
                     {"#unserializable": "x"}]),
    st.integers(-(2**70), 2**70),
).map(copy.deepcopy)  # a fresh object each time: mutations must not reach the constants


# ---- structure-aware mutation ----------------------------------------------------------------


def _paths(doc: Any, limit: int = 4000) -> list[tuple[Any, ...]]:
    """Paths to every node of the document, breadth first (the #meta parts come first)."""
    out: list[tuple[Any, ...]] = []
    todo: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while todo and len(out) < limit:
        path, node = todo.pop(0)
        out.append(path)
        if isinstance(node, dict):
            todo += [((*path, k), v) for k, v in node.items()]
        elif isinstance(node, list):
            todo += [((*path, i), v) for i, v in enumerate(node)]
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def mutated_doc(draw: st.DrawFn) -> Any:
    doc = json.loads(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):  # 0: the trace as it is
        paths = _paths(doc)
        region = draw(st.sampled_from(["meta", "state-meta", "anywhere", "top"]))
        if region == "meta":
            cands = [p for p in paths if p[:1] == ("#meta",) and len(p) > 1] or paths
        elif region == "state-meta":
            cands = [p for p in paths if len(p) >= 3 and p[0] == "states" and p[2] == "#meta"]
        elif region == "top":
            cands = [p for p in paths if len(p) <= 1]
        else:
            cands = paths
        path = draw(st.sampled_from(cands or paths))
        op = draw(st.sampled_from(["replace", "replace", "drop", "add", "dup", "swap",
                                   "action", "profile", "deep"]))
        if not path:
            doc = draw(hostile_value) if op == "replace" else doc
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        if op == "replace":
            parent[key] = draw(hostile_value)
        elif op == "drop":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(hostile_text)] = draw(hostile_value)
        elif op == "add":
            parent.insert(key, draw(hostile_value))
        elif op == "dup" and isinstance(parent, list):
            parent.insert(key, json.loads(json.dumps(parent[key])))
        elif op == "swap" and isinstance(parent, list) and len(parent) > 1:
            j = draw(st.integers(0, len(parent) - 1))
            parent[key], parent[j] = parent[j], parent[key]
        elif op == "action" and isinstance(parent, dict):
            parent[key] = draw(st.sampled_from([*ACTIONS, *HOSTILE_TEXT[:12]]))
        elif op == "profile" and isinstance(parent, dict):
            parent[key] = draw(st.sampled_from([*PROFILES, *INVARIANTS, *FLAG_INFO]))
        elif op == "deep":
            nest: Any = 0
            for _ in range(draw(st.sampled_from([10, 200, 5000]))):
                nest = [nest]
            parent[key] = nest
    return doc


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    doc = draw(mutated_doc())
    try:
        text = json.dumps(doc, indent=draw(st.sampled_from([None, 1])))
    except (ValueError, RecursionError):
        text = draw(st.sampled_from(seeds()))
    op = draw(st.sampled_from(["none", "none", "truncate", "insert", "bignum", "dupkey",
                               "constant", "bom"]))
    if op == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif op == "insert":
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["\x00", "\ud800", "{", "]", ",", '"', "\\",
                                                "\x1b", "\n"])) + text[i:]
    elif op == "bignum":
        text = text.replace('"index": 1', '"index": ' + "1" * 5000, 1).replace(
            ": 0,", ": " + "9" * 5000 + ",", 1)
    elif op == "dupkey":
        text = text.replace('"#meta": {', '"#meta": {"profile": "v5.19", ', 1)
    elif op == "constant":
        text = text.replace(": 0", ": NaN", 1).replace(": 1", ": -Infinity", 1)
    elif op == "bom":
        text = "\ufeff" + text
    return text


# ---- the loader --------------------------------------------------------------------------------


def _one_safe_line(message: str) -> None:
    assert "\n" not in message and "\r" not in message, repr(message)
    assert all(c.isprintable() for c in message), repr(message)
    assert len(message) <= LINE_LIMIT + 200, len(message)


@fuzz_settings(200)
@given(mutated_text())
def test_loader_accepts_or_says_why_in_one_line(text: str) -> None:
    try:
        trace = loads(text, "fuzz.itf.json")
    except TraceError as e:
        event("refused")
        _one_safe_line(str(e))
    else:
        event("loaded")
        assert isinstance(trace, Trace)
        for s in (trace.engine, trace.description):  # what may reach a terminal
            assert s.isprintable()


# ---- the command line ------------------------------------------------------------------------

_AUDIT: dict[str, Any] = {"root": None, "bad": []}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(name: str, args: tuple[Any, ...]) -> None:
    if _AUDIT["root"] is None:
        return
    try:
        _watch(name, args)
    except Exception as e:  # a hook that raises would make the watched call fail
        _AUDIT["bad"].append((name, f"the audit hook failed: {e!r}"))


def _watch(name: str, args: tuple[Any, ...]) -> None:
    root = _AUDIT["root"]
    if name == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if not writing:
            return
    elif name in ("os.rename", "os.replace", "os.link", "os.symlink"):
        path = args[1]
    elif name in ("os.mkdir", "os.remove", "os.rmdir", "os.chmod", "os.truncate",
                  "os.utime", "shutil.rmtree", "os.chown"):
        path = args[0]
    else:
        return
    if path is None or isinstance(path, int):
        return
    p = os.path.abspath(os.fsdecode(path))
    if p == os.devnull or "__pycache__" in p:
        return
    if "\0" in p:
        return  # the call itself refuses such a name before touching anything
    real = os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))
    if real != root and not real.startswith(root + os.sep):
        _AUDIT["bad"].append((name, p))


@functools.cache
def _install_audit() -> None:
    sys.addaudithook(_audit)  # cannot be removed: it is idle while _AUDIT["root"] is None


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Import and draw once before watching: matplotlib's font cache and Python's
    bytecode files are written on first use, outside any case's folder."""
    _install_audit()
    d = tmp_path_factory.mktemp("warm")
    t = d / "t.itf.json"
    t.write_text(seeds()[0], encoding="utf-8")
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        for argv in (["show", str(t), "--format", "png"], ["show", str(t)], ["replay", str(t)],
                     ["list"], ["--depth", "0", "--no-save", "--profile", "v5.19"],
                     ["run", str(SCENARIOS[0]), "--profile", "v5.19"] if SCENARIOS else ["list"]):
            cli_main(argv)


_COUNTER = [0]


def new_case(base: Path) -> Path:
    """A fresh folder for one case: its `work` subfolder is the working directory while
    the command runs, and the folder the only place the command may write to."""
    _COUNTER[0] += 1
    work = base / f"case{_COUNTER[0]}" / "work"
    work.mkdir(parents=True)
    return work


def check_run(capsys: pytest.CaptureFixture[str], argv: list[str], work: Path) -> int:
    """Run one command line in `work`, watching every write of the process (only while
    the command runs: hypothesis keeps caches of its own), and check what it did."""
    capsys.readouterr()
    old = os.getcwd()
    os.chdir(work)
    _AUDIT["root"], _AUDIT["bad"] = os.path.realpath(work.parent), []
    try:
        code = cli_main(argv)
    finally:
        _AUDIT["root"] = None
        os.chdir(old)
    out, err = capsys.readouterr()
    # progress lines (a check past 5 s on a slow machine) are not errors
    err = "".join(line for line in err.splitlines(keepends=True)
                  if not line.startswith("allocheck: progress: "))
    shown = [a[:60] for a in argv]
    event(f"{argv[0] if argv and argv[0] in SUBCOMMANDS else 'check'}: exit {code}")
    assert code in ALLOWED, (shown, code, err)
    assert err.count("\n") <= 1 and (err == "" or err.endswith("\n")), (shown, err)
    assert "Traceback" not in err and "Traceback" not in out, (shown, err)
    assert all(c.isprintable() for c in err.rstrip("\n")), (shown, err)
    assert all(c.isprintable() or c == "\n" for c in out), (shown, out[:300])
    assert not _AUDIT["bad"], (shown, _AUDIT["bad"])
    return code


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # a lone surrogate: bad UTF-8
    return path


def _flag_values() -> list[str]:
    out = []
    for name, info in FLAG_INFO.items():
        out += [f"{name}={str(v).lower() if isinstance(v, bool) else v}" for v in info.values]
    return out


class Args:
    """Arguments drawn from each option's domain, with at most one option (drawn, or none
    in half of the cases) given a hostile value instead: a case probes one thing, and the
    valid ones get past the parser to do real work."""

    def __init__(self, draw: st.DrawFn, names: list[str]) -> None:
        self.draw = draw
        self.bad = draw(st.one_of(st.none(), st.sampled_from(names)))

    def value(self, name: str, domain: list[str]) -> str:
        return self.draw(hostile_text if name == self.bad else st.sampled_from(domain))

    def given(self, name: str, domain: list[str]) -> list[str]:
        return [name, self.value(name, domain)]

    def maybe(self, name: str, domain: list[str]) -> list[str]:
        return self.given(name, domain) if name == self.bad or self.draw(st.booleans()) else []


@fuzz_settings(100)
@given(data=st.data())
def test_show_and_replay_of_mutated_traces(data: st.DataObject, warm: None,
                                           tmp_path_factory: pytest.TempPathFactory,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path_factory.getbasetemp()
    text = data.draw(mutated_text())
    work = new_case(base)
    f = _write(work / "t.itf.json", text)
    sub = data.draw(st.sampled_from(["show", "show", "replay", "run"]))
    argv = [sub, str(f)]
    if sub == "show":
        argv += data.draw(st.sampled_from([[], ["--slice"], ["--format", "dot"],
                                           ["--format", "mermaid"],
                                           ["--slice", "--format", "dot"]]))
    elif sub == "replay":
        a = Args(data.draw, ["--profile", "--set"])
        argv += a.maybe("--profile", list(PROFILES)) + a.maybe("--set", _flag_values())
    else:
        argv += ["--profile", data.draw(st.sampled_from(list(PROFILES))), "--quiet"]
    check_run(capsys, argv, work)


@fuzz_settings(20)
@given(data=st.data())
def test_check_arguments(data: st.DataObject, warm: None,
                         tmp_path_factory: pytest.TempPathFactory,
                         capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path_factory.getbasetemp()
    draw = data.draw
    a = Args(draw, ["--profile", "--invariant", "--depth", "--engine", "--set", "--bounds",
                    "--timeout", "--seed", "--out", "stray"])
    # one profile and at most two invariants: each case runs in well under a second
    groups = [a.given("--profile", list(PROFILES)), a.given("--invariant", list(INVARIANTS)),
              a.given("--depth", ["0", "1", "2"]),
              a.maybe("--invariant", list(INVARIANTS)), a.maybe("--engine", ["bmc", "bfs"]),
              a.maybe("--set", _flag_values()),
              a.maybe("--bounds", ["small", "hpage=2,areas=1", "chunks=1", "refs=0",
                                   "frames=2,hpage=2", "progs=1,max_ref=2"]),
              a.maybe("--timeout", ["0.5", "5", "30"]),
              a.maybe("--seed", ["0", "7", "18446744073709551615"]),
              a.maybe("--out", ["out", "out/sub/deeper", "../escape", "out\nx", "."])]
    if draw(st.booleans()):
        groups.append(["--profile", groups[0][1]])  # the same profile twice: checked once
    groups += [[flag] for flag in ("--faults", "--json", "--no-save", "--prove")
               if draw(st.booleans())]
    if ["--prove"] in groups and a.bad != "--depth":
        groups[2] = ["--depth", "1"]  # the bounded check before the proofs: short
    if ["--prove"] in groups and a.bad != "--timeout":
        # IC3 may take minutes per invariant: what is fuzzed here is the command line
        groups = [g for g in groups if g[:1] != ["--timeout"]] + [["--timeout", "3"]]
    argv = [x for g in draw(st.permutations(groups)) for x in g]
    if a.bad == "stray":  # an argument of its own anywhere
        argv.insert(draw(st.integers(0, len(argv))), draw(hostile_text))
    work = new_case(base)
    check_run(capsys, argv, work)


HOSTILE_OPTIONS = ["--no-such", "-x", "--depth", "--out", "--out=", "--out=\n", "-\x1b[2J",
                   "--\ud800", "--" + "o" * 5000, "--profile=v9", "-"]


@fuzz_settings(80)
@given(data=st.data())
def test_other_commands_arguments(data: st.DataObject, warm: None,
                                  tmp_path_factory: pytest.TempPathFactory,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path_factory.getbasetemp()
    draw = data.draw
    sub = draw(st.sampled_from(["list", "show", "show", "replay", "catalog", "run", "run"]))
    work = new_case(base)
    trace = str(_write(work / "t.itf.json", draw(st.sampled_from(seeds()))))
    if sub == "list":
        a = Args(draw, ["stray"])
        argv = ["list", *([draw(hostile_text)] if a.bad else [])]
    elif sub == "show":
        a = Args(draw, ["FILE", "--format", "--output", "stray"])
        fmt = a.value("--format", ["text", "dot", "mermaid", "png"])
        argv = ["show", a.value("FILE", [trace]), "--format", fmt]
        if fmt == "png" or a.bad == "--output":
            argv += a.maybe("--output", ["pic.png", "missing/pic.png", ".", "../up.png",
                                         "p\nq.png", "/dev/null", trace])
        if draw(st.booleans()):
            argv.append("--slice")
    elif sub == "replay":
        a = Args(draw, ["FILE", "--profile", "--set", "stray"])
        argv = ["replay", a.value("FILE", [trace])]
        if draw(st.booleans()):
            argv.append(trace)
        argv += a.maybe("--profile", list(PROFILES)) + a.maybe("--set", _flag_values())
    elif sub == "catalog":
        # a real catalog takes 15 s: only arguments that must be refused
        a = Args(draw, ["stray"])
        argv = ["catalog", *draw(st.sampled_from([
            ["--depth", "-1"], ["--depth", "65"], ["--depth", "x"], ["--depth", ""],
            ["--depth", "9" * 5000], ["--depth", "\n"], ["--out", ""],
            ["--out", "no/such/dir"], ["--out", trace],
            *[[h] for h in HOSTILE_OPTIONS if h not in ("--depth", "--out", "--out=\n")]]))]
    else:
        a = Args(draw, ["FILE", "--profile", "--set", "--bounds", "--interleave", "--timeout",
                        "stray"])
        argv = ["run", a.value("FILE", [str(p) for p in SCENARIOS] + [trace]),
                *a.given("--profile", list(PROFILES))]
        argv += a.maybe("--set", _flag_values())
        argv += a.maybe("--bounds", ["small", "hpage=2,areas=1"])
        argv += a.maybe("--interleave", ["0"])  # 1 or more is a BMC search: seconds
        argv += a.maybe("--timeout", ["5"])
        # no --faults: with page-table failures, run searches (tens of seconds a file)
        argv += [flag for flag in ("--json", "--quiet") if draw(st.booleans())]
    if a.bad == "stray":
        argv.insert(draw(st.integers(1, len(argv))),
                    draw(st.one_of(hostile_text, st.sampled_from(HOSTILE_OPTIONS))))
    check_run(capsys, argv, work)
