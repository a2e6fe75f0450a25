"""The command line: `python -m search [check options] | list | replay | show | catalog`.

Exit codes, after TLC and Apalache: 0 the results agree with every declared history;
12 a violation that the profile does not declare (under --set overrides: any violation);
13 a declared violation that was not reproduced within the depth; 1 a replayed trace did
not reproduce; 2 usage errors and bad input; 130 interrupted; 255 internal errors,
an engine contradicting the concrete model included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from invariants import INVARIANTS
from invariants import doc as invariant_doc
from model.actions import ACTIONS
from model.bounds import DEFAULT_BOUNDS, Bounds, BoundsError
from model.profiles import FLAG_INFO, PROFILES, ProfileError, get_profile, parse_flag_value
from model.system import System
from search.progress import Progress
from search.result import HOLDS, PROVED, UNKNOWN, VIOLATED, InternalError, Result

EXIT_OK, EXIT_NOT_REPRODUCED, EXIT_USAGE = 0, 1, 2
EXIT_UNDECLARED, EXIT_HISTORY_LOST, EXIT_INTERRUPTED, EXIT_INTERNAL = 12, 13, 130, 255
MAX_DEPTH = 64
DEFAULT_OUT = "counterexamples"


class UsageError(Exception):
    """Bad arguments or input: printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# ---- arguments ------------------------------------------------------------------------


def _depth(text: str) -> int:
    try:
        d = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"depth must be a whole number, got {text!r}") from None
    if not 0 <= d <= MAX_DEPTH:
        raise argparse.ArgumentTypeError(f"depth must be between 0 and {MAX_DEPTH}, got {d}")
    return d


def _timeout(text: str) -> float:
    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout must be seconds, got {text!r}") from None
    if not 0 < t <= 86400:
        raise argparse.ArgumentTypeError(f"timeout must be between 0 and 86400 seconds, got {text}")
    return t


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set needs flag=value, got {item!r}")
        out[name.strip()] = parse_flag_value(name.strip(), value)
    return out


def _check_parser() -> _Parser:
    p = _Parser(
        prog="python -m search",
        description="Check Linux allocator invariants on kernel-version profiles. "
        "Subcommands: list, replay FILE..., show FILE, catalog (see `python -m search "
        "SUBCOMMAND --help`).",
    )
    p.add_argument("--depth", type=_depth, default=10,
                   help=f"bound on the number of kernel calls (0..{MAX_DEPTH}, default 10)")
    p.add_argument("--profile", action="append", default=[], metavar="P",
                   help="kernel profile to check (repeatable; default: all built-in): "
                   + ", ".join(PROFILES))
    p.add_argument("--invariant", action="append", default=[], metavar="I",
                   help="invariant to check (repeatable; default: all): " + ", ".join(INVARIANTS))
    p.add_argument("--engine", choices=("bmc", "bfs"), default="bmc",
                   help="bmc: bounded z3 search (default); bfs: explicit-state breadth-first")
    p.add_argument("--set", action="append", default=[], metavar="FLAG=VALUE",
                   help="override a profile flag (repeatable); a profile with overrides has "
                   "no declared history, so any violation counts")
    p.add_argument("--bounds", default="", metavar="K=V,...",
                   help="model scope: small (default: frames=4,hpage=2,areas=2,chunks=2,progs=2,"
                   "refs=1), wide (frames=16,hpage=4,areas=4,chunks=4,progs=2,refs=2), or K=V,...")
    p.add_argument("--faults", action="store_true",
                   help="page-table allocations may fail (Rick Edgecombe's direct-map splits)")
    p.add_argument("--prove", action="store_true",
                   help="try k-induction (k up to --depth) on every invariant that holds")
    p.add_argument("--timeout", type=_timeout, default=None, metavar="SECONDS",
                   help="bmc: seconds per z3 query; bfs: per profile; --prove: per invariant proof. "
                   "A query that runs out is reported unknown, never holds")
    p.add_argument("--seed", type=int, default=0, help="recorded in traces (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="where counterexamples are saved (default counterexamples/)")
    p.add_argument("--no-save", action="store_true", help="do not save counterexamples")
    return p


# ---- the check ------------------------------------------------------------------------


@dataclass
class Row:
    profile: str
    invariant: str
    result: Result
    expected: str | None
    faults: bool
    trace: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def matches(self) -> bool | None:
        if self.expected is None or self.result.status == UNKNOWN:
            return None
        return (self.result.status == VIOLATED) == (self.expected == VIOLATED)

    def as_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "profile": self.profile,
            "invariant": self.invariant,
            "engine": r.engine,
            "status": r.status,
            "depth": r.depth,
            "expected": self.expected,
            "matches": self.matches,
            "trace": self.trace,
            "seconds": round(r.seconds, 3),
            "faults": self.faults,
            "detail": r.detail,
        }


def _engine(name: str) -> Callable[..., dict[str, Result]]:
    if name == "bfs":
        from search import bfs

        return bfs.check
    from search import bmc

    return bmc.check


def _out_dir(path: str, create: bool = True) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {path}: not a folder")
    if not out.exists():
        if not out.parent.is_dir():
            raise UsageError(f"--out {path}: folder {out.parent} does not exist")
        if create:
            out.mkdir()
    return out


def run_check(profiles: list[str], invariants: list[str], depth: int, engine: str,
              overrides: dict[str, Any], bounds: Bounds, faults: bool, prove: bool,
              timeout: float | None, seed: int, out: Path | None,
              progress: Progress, rows: list[Row]) -> None:
    """Check every profile, appending a Row per invariant as results arrive (so that an
    interrupted run still has what it finished)."""
    from search.trace import save, trace_from_steps

    check = _engine(engine)
    for name in profiles:
        system = System.build(name, bounds=bounds, faults=faults, overrides=overrides)
        progress.note(f"{name}: building")

        def tick(d: int, inv: str, name: str = name) -> None:
            progress.note(f"{name}: depth {d} {inv}")

        if engine == "bmc":
            results = check(system, invariants, depth, query_timeout=timeout, progress=tick)
        else:
            results = check(system, invariants, depth, timeout=timeout, progress=tick)
        for inv in invariants:
            r = results[inv]
            row = Row(name, inv, r, system.expected(inv), faults)
            if r.status == VIOLATED and out is not None:
                trace = trace_from_steps(system, r.steps, inv, engine, seed)
                row.trace = str(save(trace, out))
            if prove and r.status == HOLDS:
                row.result = _prove(system, inv, depth, timeout, r)
            rows.append(row)
            progress.advance()


def _prove(system: System, inv: str, depth: int, timeout: float | None, bounded: Result) -> Result:
    from search import induction

    proof = induction.prove(system, inv, max(depth, 1), timeout=timeout)
    if proof.status == PROVED:
        proof.seconds += bounded.seconds
        return proof
    bounded.detail = f"{bounded.detail}; {proof.detail}" if proof.detail else bounded.detail
    return bounded


def describe(row: Row, depth: int) -> str:
    r = row.result
    if r.status == VIOLATED:
        return f"violated at depth {r.depth}"
    if r.status == PROVED:
        return f"proved (k={r.depth})"
    if r.status == HOLDS:
        return f"holds to depth {r.depth}"
    return f"unknown ({r.detail.split(';')[0]})" if r.detail else "unknown"


def print_table(rows: list[Row], depth: int, engine: str, bounds: Bounds, faults: bool,
                stream: Any = None) -> None:
    stream = stream or sys.stdout
    scope = ",".join(f"{k}={v}" for k, v in bounds.as_dict().items())
    print(f"allocheck {engine} to depth {depth}; bounds {scope}; page-table allocation "
          f"failures {'on' if faults else 'off'}", file=stream)
    print(f"{'profile':<15}{'invariant':<22}{'result':<28}{'declared':<10}{'match':<7}trace",
          file=stream)
    for row in rows:
        m = {True: "yes", False: "NO", None: "-"}[row.matches]
        print(f"{row.profile:<15}{row.invariant:<22}{describe(row, depth):<28}"
              f"{row.expected or '-':<10}{m:<7}{row.trace or ''}", file=stream)
    bad = [r for r in rows if r.matches is False]
    unknown = [r for r in rows if r.result.status == UNKNOWN]
    holds = [r for r in rows if r.result.status == HOLDS]
    print(f"{len(rows)} results, {sum(r.matches is True for r in rows)} as declared, "
          f"{len(bad)} contradicting, {len(unknown)} unknown.", file=stream)
    if holds:
        print(f"'holds to depth {depth}' is bounded: no sequence of at most {depth} kernel "
              "calls violates it within these bounds; longer sequences were not checked.",
              file=stream)
    for r in unknown:
        print(f"unknown: {r.profile} {r.invariant}: {r.result.detail}", file=stream)
    for r in rows:
        if "not proved" in r.result.detail:
            why = r.result.detail.split("; ", 1)[-1]
            print(f"not proved: {r.profile} {r.invariant}: {why}", file=stream)


def exit_code(rows: list[Row]) -> int:
    if any(r.result.status == VIOLATED and r.expected != VIOLATED for r in rows):
        return EXIT_UNDECLARED
    if any(r.expected == VIOLATED and r.result.status != VIOLATED for r in rows):
        return EXIT_HISTORY_LOST
    return EXIT_OK


def cmd_check(argv: Sequence[str]) -> int:
    a = _check_parser().parse_args(argv)
    profiles = a.profile or list(PROFILES)
    for p in profiles:
        get_profile(p)
    invariants = list(dict.fromkeys(a.invariant)) or list(INVARIANTS)
    for i in invariants:
        if i not in INVARIANTS:
            raise UsageError(f"unknown invariant {i!r}; known: {', '.join(INVARIANTS)}")
    overrides = parse_overrides(a.set)
    for p in profiles:
        get_profile(p).flags.with_overrides(overrides)
    bounds = Bounds.parse(a.bounds) if a.bounds else DEFAULT_BOUNDS
    # checked even with --no-save, before any work: a typo must not cost a long run
    out_dir = _out_dir(a.out, create=not a.no_save)
    out = None if a.no_save else out_dir
    progress = Progress(len(profiles) * len(invariants), enabled=None if not a.json else False)
    rows: list[Row] = []
    t0 = time.monotonic()
    interrupted = False
    try:
        run_check(profiles, invariants, a.depth, a.engine, overrides, bounds, a.faults,
                  a.prove, a.timeout, a.seed, out, progress, rows)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    if a.json:
        print(json.dumps({
            "allocheck": _version(), "engine": a.engine, "depth": a.depth,
            "bounds": bounds.as_dict(), "faults": a.faults, "overrides": overrides,
            "seed": a.seed, "interrupted": interrupted,
            "seconds": round(time.monotonic() - t0, 3),
            "results": [r.as_json() for r in rows],
        }, indent=2))
    else:
        print_table(rows, a.depth, a.engine, bounds, a.faults)
    if interrupted:
        print(f"interrupted: {len(rows)} of {len(profiles) * len(invariants)} results "
              "finished (shown above)", file=sys.stderr)
        return EXIT_INTERRUPTED
    return exit_code(rows)


def _version() -> str:
    from search.trace import allocheck_version

    return allocheck_version()


# ---- list, replay, show, catalog ------------------------------------------------------


def cmd_list(argv: Sequence[str]) -> int:
    p = _Parser(prog="python -m search list",
                description="Profiles with their flags and declared history, invariants, actions.")
    p.parse_args(argv)
    print("Profiles (violations declared with failures off; + with --faults):")
    for prof in PROFILES.values():
        extra = sorted(prof.violated_with_faults)
        print(f"  {prof.name:<15}{prof.summary}")
        print(f"  {'':<15}violates: {', '.join(sorted(prof.violated)) or 'nothing'}"
              + (f"; + with faults: {', '.join(extra)}" if extra else ""))
        flags = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                          for k, v in prof.flags.as_dict().items())
        print(f"  {'':<15}flags: {flags}")
    print("\nFlags (override with --set flag=value):")
    for name, info in FLAG_INFO.items():
        vals = "|".join(str(v).lower() if isinstance(v, bool) else v for v in info.values)
        print(f"  {name} ({vals}): {info.doc}")
    print("\nInvariants:")
    for name in INVARIANTS:
        print(f"  {name:<22}{invariant_doc(name)}")
    print("\nActions:")
    for name, act in ACTIONS.items():
        first = act.doc.split("\n")[0]
        print(f"  {name:<26}({', '.join(act.params)}) {first}")
    return EXIT_OK


def _existing(path: str) -> str:
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    return path


def cmd_replay(argv: Sequence[str]) -> int:
    from search.trace import load, replay

    p = _Parser(prog="python -m search replay",
                description="Re-execute saved traces on the concrete model: exit 0 when all "
                "reproduce, 1 when one does not (with the first diverging step), 2 bad input.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--profile", default=None, help="replay under another kernel profile")
    p.add_argument("--set", action="append", default=[], metavar="FLAG=VALUE")
    a = p.parse_args(argv)
    overrides = parse_overrides(a.set)
    if a.profile:
        get_profile(a.profile)
    traces = [(f, load(_existing(f))) for f in a.files]
    code = EXIT_OK
    for f, trace in traces:
        rep = replay(trace, profile=a.profile, overrides=overrides or None)
        print(f"{f}:")
        for line in rep.narration:
            print(f"  {line}")
        print(f"  => {'reproduced' if rep.reproduced else 'NOT reproduced'}: {rep.reason}")
        if not rep.reproduced:
            code = EXIT_NOT_REPRODUCED
    return code


def cmd_show(argv: Sequence[str]) -> int:
    from search.graph import explain, render_dot, render_mermaid, render_png, render_text
    from search.trace import load

    p = _Parser(prog="python -m search show",
                description="Narrate or draw a saved trace, with its causal slice.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--slice", action="store_true", help="only the steps the violation depends on")
    p.add_argument("--format", choices=("text", "dot", "mermaid", "png"), default="text")
    p.add_argument("--output", default=None, help="PNG file to write (default: FILE with .png)")
    a = p.parse_args(argv)
    trace = load(_existing(a.file))
    if a.format == "text":
        print(render_text(trace, slice_only=a.slice))
        print()
        print(explain(trace))
    elif a.format == "dot":
        print(render_dot(trace, slice_only=a.slice))
    elif a.format == "mermaid":
        print(render_mermaid(trace, slice_only=a.slice))
    else:
        target = Path(a.output or a.file.removesuffix(".itf.json") + ".png")
        if not target.parent.exists():
            raise UsageError(f"--output {target}: folder {target.parent} does not exist")
        try:
            print(render_png(trace, target, slice_only=a.slice))
        except ImportError:
            raise UsageError("PNG needs matplotlib: pip install 'allocheck[png]'") from None
    return EXIT_OK


def cmd_catalog(argv: Sequence[str]) -> int:
    p = _Parser(prog="python -m search catalog",
                description="Regenerate counterexamples/: the shortest trace of every declared "
                "violation of every built-in profile, with failures off and on (BMC).")
    p.add_argument("--depth", type=_depth, default=10)
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR")
    a = p.parse_args(argv)
    out = _out_dir(a.out)
    rows: list[Row] = []
    for faults in (False, True):
        for prof in PROFILES.values():
            # with faults on, only what the faults add: the rest is in the first pass
            declared = sorted(prof.violated_with_faults if faults else prof.violated)
            if not declared:
                continue
            run_check([prof.name], declared, a.depth, "bmc", {}, DEFAULT_BOUNDS, faults,
                      False, None, 0, out, Progress(len(declared)), rows)
    for r in rows:
        print(f"{r.profile:<15}{r.invariant:<22}{'faults' if r.faults else '':<8}"
              f"{describe(r, a.depth):<28}{r.trace or ''}")
    return exit_code(rows)


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "list": cmd_list, "replay": cmd_replay, "show": cmd_show, "catalog": cmd_catalog,
}


def main(argv: Sequence[str]) -> int:
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return SUBCOMMANDS[argv[0]](argv[1:])
        return cmd_check(argv)
    except (UsageError, ProfileError, BoundsError) as e:
        print(f"allocheck: {e}", file=sys.stderr)
        return EXIT_USAGE
    except InternalError as e:
        print(f"allocheck: internal error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("allocheck: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`| head`): not an error of ours; keep Python from
        # complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:
        from search.trace import TraceError

        if isinstance(e, TraceError):
            print(f"allocheck: {e}", file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("ALLOCHECK_DEBUG"):
            traceback.print_exc()
        print(f"allocheck: internal error: {type(e).__name__}: {_one_line(str(e))} "
              "(ALLOCHECK_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(s: str) -> str:
    return " ".join(s.split())
