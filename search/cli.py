"""The command line: `python -m search [check options] | list | replay | show | catalog | run`.

Exit codes, after TLC and Apalache (the README's table lists the same):

- 0: every result agrees with the declared history (replay: every trace reproduced;
  run: no invariant violated);
- 1: (replay) a trace did not reproduce; (run) a scenario has a call that can happen
  under none of the requested profiles;
- 2: usage errors and bad input: arguments, trace files, output paths that cannot be used;
- 3: some result is unknown (z3 answered unknown, or --timeout ran out) and nothing
  contradicts the history: the run neither confirms nor refutes it;
- 12: a violation that the profile does not declare (under --set overrides: any violation;
  run: any violation);
- 13: a declared violation that the search did not reproduce within the depth;
- 74: an output could not be written (EX_IOERR): the counterexample folder, a PNG,
  standard output. The results are printed first whatever happened to the files;
- 130: interrupted (every result finished before is printed, with the traces saved);
- 255: internal errors, an engine contradicting the concrete model included.

When several apply: 130, then 255, then 74, then 12, 13, 3. Every error is one line on
stderr, with any value it echoes escaped and cut (see `search.traces.naming.one_line`).

Only the standard library and light modules are imported here: the model, z3 and the
engines are imported when a command runs, under the interrupt handling of `main`.
"""

# ruff: noqa: E402  (the start-up interrupt handler is installed before the other imports)
from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType


def _interrupt_before_main(signum: int, frame: FrameType | None) -> None:
    # Ctrl-C while the interpreter imports the model and z3: nothing has run, nothing to
    # print but the one line; no traceback, no death by the signal
    try:
        os.write(2, b"allocheck: interrupted\n")
    finally:
        os._exit(130)


def _run_as_program() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "search.__main__"


# First of all: `python -m search` interrupted during start-up exits 130 with one line.
# Not when a test imports this module (its handler is left alone), nor in a background
# job that inherited SIGINT ignored.
if _run_as_program() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, _interrupt_before_main)

import argparse
import errno
import io
import json
import re
import stat
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from search.progress import Progress
from search.result import HOLDS, PROVED, UNKNOWN, VIOLATED, InternalError, Result
from search.traces.naming import echo, one_line, printable

if TYPE_CHECKING:
    from model.bounds import Bounds
    from model.system import System
    from search.traces.itf import Trace

EXIT_OK, EXIT_NOT_REPRODUCED, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3
EXIT_UNDECLARED, EXIT_HISTORY_LOST = 12, 13
EXIT_OUTPUT, EXIT_INTERRUPTED, EXIT_INTERNAL = 74, 130, 255
EXIT_CODES = frozenset({EXIT_OK, EXIT_NOT_REPRODUCED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_UNDECLARED,
                        EXIT_HISTORY_LOST, EXIT_OUTPUT, EXIT_INTERRUPTED, EXIT_INTERNAL})
MAX_DEPTH = 64
MAX_TIMEOUT = 86400
DEFAULT_OUT = "counterexamples"


class UsageError(Exception):
    """Bad arguments or input: printed as one line, exit 2."""


class OutputError(Exception):
    """An output that could not be written: one line, exit 74."""


class _Deadline(BaseException):
    """--timeout ran out (raised by SIGALRM). A BaseException, like KeyboardInterrupt, so
    that no `except Exception` on the way swallows it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# ---- interrupts and deadlines -----------------------------------------------------------


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _Signals:
    """What the handlers below saw during this `main`. A signal handler's exception can
    surface as another one: raised while ctypes converts an argument for z3, it becomes a
    `ctypes.ArgumentError`. So a failure after a Ctrl-C counts as the interrupt, and one
    after the deadline fired as the timeout, whatever its type."""

    interrupted = False  # a Ctrl-C reached `_first_interrupt`
    deadline = False  # the innermost `_deadline` fired


_SIG = _Signals()


def _interrupted(e: BaseException) -> bool:
    return isinstance(e, KeyboardInterrupt) or _SIG.interrupted


def _timed_out(e: BaseException) -> bool:
    return not _interrupted(e) and (isinstance(e, _Deadline) or _SIG.deadline)


def _ignore_interrupts() -> None:
    """After the first Ctrl-C, every later one is ignored: what finished is printed and
    saved in full, and no library's cleanup code is interrupted into a traceback."""
    if _main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _in_destructor(frame: FrameType | None) -> bool:
    """Is the signal being handled inside a `__del__` (z3 frees its terms there)? An
    exception raised there is printed as "Exception ignored" with a traceback, and lost."""
    for _ in range(8):
        if frame is None:
            return False
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _first_interrupt(signum: int, frame: FrameType | None) -> None:
    if _in_destructor(frame):
        # not here: deliver it again in a moment, when the destructor has returned
        threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    _SIG.interrupted = True
    _ignore_interrupts()
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_handling() -> Iterator[None]:
    """The first Ctrl-C raises KeyboardInterrupt, later ones are ignored; the previous
    handler is restored on the way out (for callers in-process, such as tests)."""
    _SIG.interrupted = False
    if not _main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # a background job (`cmd &` in a script) inherits SIGINT ignored: keep it so
        yield
        return
    old = signal.signal(signal.SIGINT, _first_interrupt)
    try:
        yield
    finally:
        if not _run_as_program():
            signal.signal(signal.SIGINT, old)


_DEADLINE_RETRY = 0.05  # seconds: how soon the alarm comes back after landing in a destructor


def _on_deadline(signum: int, frame: FrameType | None) -> None:
    _SIG.deadline = True
    if _in_destructor(frame):
        return  # the interval timer fires again in _DEADLINE_RETRY
    signal.setitimer(signal.ITIMER_REAL, 0)
    raise _Deadline


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise _Deadline in this thread after `seconds` of wall time (SIGALRM): bounds the
    parts of a check that no solver timeout covers, such as building the encoding."""
    _SIG.deadline = False
    if seconds is None or not _main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    old = signal.signal(signal.SIGALRM, _on_deadline)
    signal.setitimer(signal.ITIMER_REAL, seconds, _DEADLINE_RETRY)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- arguments ------------------------------------------------------------------------

_WHOLE = re.compile(r"\s*[+-]?[0-9]+\s*")


def _whole(text: str, what: str, lo: int, hi: int) -> int:
    if not _WHOLE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {echo(text)}")
    digits = text.strip().lstrip("+-")
    if len(digits) > len(str(hi)) + 1:  # before int(): no digit-limit error, no huge value
        raise argparse.ArgumentTypeError(f"{what} must be between {lo} and {hi}, "
                                         f"got a number of {len(digits)} digits")
    v = int(text)
    if not lo <= v <= hi:
        raise argparse.ArgumentTypeError(f"{what} must be between {lo} and {hi}, got {v}")
    return v


def _depth(text: str) -> int:
    return _whole(text, "depth", 0, MAX_DEPTH)


def _seed(text: str) -> int:
    return _whole(text, "seed", 0, 2**64 - 1)


MAX_WORKERS = 1024


def _workers(text: str) -> int:
    return _whole(text, "workers", 1, MAX_WORKERS)


def _scheduler(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: name a Dask scheduler, e.g. tcp://host:8786")
    if any(not c.isprintable() or c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"not an address: {echo(text)}")
    return text


def _timeout(text: str) -> float:
    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout must be seconds, got {echo(text)}") from None
    if not 0 < t <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"timeout must be between 0 and {MAX_TIMEOUT} seconds, got {echo(text)}")
    return t


def _folder(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("empty: name a folder (. is the current one)")
    return text


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    from model.profiles import parse_flag_value

    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set needs flag=value, got {echo(item)}")
        out[name.strip()] = parse_flag_value(name.strip(), value)
    return out


def _check_parser() -> _Parser:
    from invariants import INVARIANTS
    from model.profiles import PROFILES

    p = _Parser(
        prog="python -m search",
        description="Check Linux allocator invariants on kernel-version profiles. "
        "Subcommands: list, replay FILE..., show FILE, catalog, run FILE..., certify FILE, "
        "history, fragmentation (see "
        "`python -m search SUBCOMMAND --help`). Exit codes: 0 as declared, 3 some result unknown, 12 an "
        "undeclared violation, 13 a declared one not reproduced, 2 bad input, 74 an output "
        "not written, 130 interrupted, 255 internal error.",
    )
    p.add_argument("--depth", type=_depth, default=6,
                   help=f"bound on the number of kernel calls (0..{MAX_DEPTH}, default 6: every "
                   "declared violation is at most 4 calls deep)")
    p.add_argument("--profile", action="append", default=[], metavar="P",
                   help="kernel profile to check (repeatable, each checked once; default: all "
                   "built-in): " + ", ".join(PROFILES))
    p.add_argument("--invariant", action="append", default=[], metavar="I",
                   help="invariant to check (repeatable; default: all): " + ", ".join(INVARIANTS))
    p.add_argument("--engine", choices=("bmc", "bfs"), default="bmc",
                   help="bmc: bounded z3 search (default); bfs: explicit-state breadth-first")
    p.add_argument("--set", action="append", default=[], metavar="FLAG=VALUE",
                   help="override a profile flag (repeatable); a profile with overrides has "
                   "no declared history, so any violation counts")
    p.add_argument("--bounds", default="", metavar="K=V,...",
                   help="model scope: small (default: frames=4,hpage=2,areas=2,chunks=2,progs=2,"
                   "refs=1), wide (frames=16,hpage=4,areas=4,chunks=4,progs=2,refs=2), numa (small "
                   "with nodes=2), or K=V,...")
    p.add_argument("--faults", action="store_true",
                   help="page-table allocations may fail (Rick Edgecombe's direct-map splits)")
    p.add_argument("--prove", action="store_true",
                   help="prove every invariant that holds to --depth for every depth within the "
                   "bounds (IC3): 'proved' only with an inductive invariant checked by a separate "
                   "z3 query and saved as a certificate under $ALLOCHECK_CERTIFICATES, else "
                   "certificates/ under --out (default counterexamples/certificates/; `certify "
                   "FILE` re-checks one); otherwise 'not proved: why'. Up to --timeout, else "
                   "900 s, per invariant")
    p.add_argument("--timeout", type=_timeout, default=None, metavar="SECONDS",
                   help="limit on the wall time of each profile's check, everything included "
                   "(building the z3 encoding, every query; bfs: the whole search), and of each "
                   "--prove proof. What is not settled in time is reported unknown, never holds "
                   f"(exit 3). 0 < SECONDS <= {MAX_TIMEOUT}; default: no limit")
    p.add_argument("--seed", type=_seed, default=0, help="recorded in traces (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", type=_folder, default=DEFAULT_OUT, metavar="DIR",
                   help="where counterexamples are saved (default counterexamples/); checked "
                   "before the search")
    p.add_argument("--no-save", action="store_true", help="do not save counterexamples")
    p.add_argument("--workers", type=_workers, default=None, metavar="N",
                   help="check N profiles at a time, each in a process of its own (default: "
                   "every core; 1: one after the other in this process). The results, traces "
                   "included, are the same whatever N")
    p.add_argument("--scheduler", type=_scheduler, default=None, metavar="ADDRESS",
                   help="send the profiles' checks to the Dask cluster whose scheduler is at "
                   "ADDRESS (tcp://host:8786; started with `dask scheduler` and `dask worker "
                   "ADDRESS`; needs pip install 'allocheck[cluster]' here and on the workers)")
    return p


# ---- output locations -----------------------------------------------------------------


def _os_reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _out_dir(path: str, create: bool = True, option: str = "--out") -> Path:
    """The folder counterexamples go to, checked before any work: it is (or can be made)
    a folder, and a file can be created in it. Problems with the path as given (missing
    parent, not a folder, a dangling link, a name too long) are usage errors; a folder the
    system does not let us write to is an OutputError."""
    if not path:
        raise UsageError(f"{option} is empty: name a folder (. is the current one)")
    shown = echo(path)
    if "\0" in path:  # only from a caller in Python: argv cannot hold a NUL
        raise UsageError(f"{option} {shown}: a name cannot hold a NUL character")
    out = Path(path)
    try:
        st = os.stat(out)
    except FileNotFoundError:
        if os.path.lexists(out):
            raise UsageError(f"{option} {shown}: a symbolic link to nothing") from None
        parent = out.parent
        if not parent.is_dir():
            raise UsageError(f"{option} {shown}: folder {echo(str(parent))} does not exist") from None
        if create:
            try:
                out.mkdir()
            except OSError as e:
                raise OutputError(f"{option} {shown}: cannot create the folder: "
                                  f"{_os_reason(e)}") from None
            _probe(out, option)
        return out
    except NotADirectoryError:
        raise UsageError(f"{option} {shown}: a part of the path is not a folder") from None
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            raise UsageError(f"{option} {shown}: {_os_reason(e)}") from None
        raise OutputError(f"{option} {shown}: {_os_reason(e)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{option} {shown}: not a folder")
    if create:
        _probe(out, option)
    return out


def _probe(folder: Path, option: str) -> None:
    """Create and remove a file in `folder`: a read-only folder or file system is found
    before the search, not after it."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".allocheck-probe.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutputError(f"{option} {echo(str(folder))}: cannot write there: "
                          f"{_os_reason(e)}") from None


def _output_file(path: str, option: str = "--output") -> Path:
    """A file to be written (atomically, see `search.traces.itf.write_atomic`): its folder must
    exist, and if it exists it must be a regular file or a link (which is replaced, not
    followed): never a folder, a device or a FIFO."""
    if not path:
        raise UsageError(f"{option} is empty: name a file")
    shown = echo(path)
    if "\0" in path:
        raise UsageError(f"{option} {shown}: a name cannot hold a NUL character")
    target = Path(path)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        if not target.parent.is_dir():
            raise UsageError(f"{option} {shown}: folder {echo(str(target.parent))} "
                             "does not exist") from None
        return target
    except NotADirectoryError:
        raise UsageError(f"{option} {shown}: a part of the path is not a folder") from None
    except OSError as e:
        raise UsageError(f"{option} {shown}: {_os_reason(e)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{option} {shown}: is a folder; name a file")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise UsageError(f"{option} {shown}: exists and is not a regular file")
    return target


@dataclass
class Saver:
    """Saves counterexamples as results arrive; a failure to save is recorded, never
    raised: the results are printed whatever happens to the files."""

    out: Path | None
    saved: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one reason per trace not saved

    def save(self, trace: Trace) -> str | None:
        from search.traces.itf import TraceError, save

        if self.out is None:
            return None
        try:
            path = str(save(trace, self.out))
        except OSError as e:
            self.failed.append(_os_reason(e))
            return None
        except TraceError as e:
            self.failed.append(str(e))
            return None
        self.saved.append(path)
        return path

    def summary(self) -> str:
        """One clause on what was not saved ("" when everything was)."""
        if not self.failed:
            return ""
        n = len(self.failed)
        return (f"{n} trace{'s' if n > 1 else ''} not saved under {echo(str(self.out))}: "
                f"{self.failed[0]}")


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
            "certificate": r.certificate,
        }


def _engine(name: str) -> Callable[..., dict[str, Result]]:
    if name == "bfs":
        from search.engines import bfs

        return bfs.check
    from search.engines import bmc

    return bmc.check


def _settled(exc: BaseException, fn: Callable[..., Any]) -> dict[str, Result]:
    """The results an engine call had settled when `exc` stopped it, read from the
    `results` dict in the engine function's frame on the traceback. The engines return
    every result of a profile at once; this keeps an interrupted or timed-out check from
    losing those already settled. Empty when that frame or dict is not there: nothing is
    invented. (A callback per settled result in the engines would make this unnecessary.)"""
    code = getattr(fn, "__code__", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            found = tb.tb_frame.f_locals.get("results")
            if isinstance(found, dict):
                return {k: v for k, v in found.items()
                        if isinstance(k, str) and isinstance(v, Result)}
        tb = tb.tb_next
    return {}


def _check_profile(name: str, invariants: list[str], depth: int, engine: str,
                   overrides: dict[str, Any], bounds: Bounds, faults: bool,
                   timeout: float | None, progress: Progress
                   ) -> tuple[System | None, dict[str, Result], bool]:
    """One profile's check under --timeout: (system, settled results, interrupted).
    Pending invariants at the deadline are unknown; at an interrupt, absent."""
    from model.system import System
    from search.engines.symbolic import fresh_z3

    check = _engine(engine)
    reached = [0]

    def tick(d: int, inv: str) -> None:
        reached[0] = d
        progress.note(f"{name}: depth {d} {inv}")

    system: System | None = None
    results: dict[str, Result] | None = None
    t0 = time.monotonic()
    try:
        with _deadline(timeout):
            progress.note(f"{name}: building")
            fresh_z3()
            system = System.build(name, bounds=bounds, faults=faults, overrides=overrides)
            if engine == "bmc":
                results = check(system, invariants, depth, timeout=timeout,
                                query_timeout=timeout, progress=tick)
            else:
                results = check(system, invariants, depth, timeout=timeout, progress=tick)
    except BaseException as e:
        if _interrupted(e):
            _ignore_interrupts()
            return system, (results if results is not None else _settled(e, check)), True
        if not _timed_out(e):
            raise
        got = results if results is not None else _settled(e, check)
        d = reached[0]
        checked = f"no violation within {d - 1} steps" if d > 0 else "nothing checked"
        what = "building the encoding included" if engine == "bmc" else "the whole search"
        for inv in invariants:
            if inv not in got:
                got[inv] = Result(inv, engine, UNKNOWN, max(d - 1, 0), [],
                                  time.monotonic() - t0,
                                  f"timeout after {timeout:g}s of wall time ({what}) at depth "
                                  f"{d}; {checked}")
        return system, got, False
    return system, results, False


def run_check(profiles: list[str], invariants: list[str], depth: int, engine: str,
              overrides: dict[str, Any], bounds: Bounds, faults: bool, prove: bool,
              timeout: float | None, seed: int, out: Path | Saver | None,
              progress: Progress, rows: list[Row], *, workers: int = 1,
              scheduler: str | None = None) -> None:
    """Check every profile, appending a Row per invariant as results are settled (so
    that an interrupted run still has every result it finished, per invariant), saving
    each counterexample as it comes. Raises KeyboardInterrupt after recording what was
    settled when interrupted.

    With `workers` > 1 (and more than one profile) the profiles are checked that many at
    a time in processes of their own, and with `scheduler` on that Dask cluster
    (search/distribute.py); the rows come in the same order either way."""
    from search.traces.itf import trace_from_steps

    saver = out if isinstance(out, Saver) else Saver(out)
    if scheduler is not None or (workers > 1 and len(profiles) > 1):
        _run_distributed(profiles, invariants, depth, engine, overrides, bounds, faults, prove,
                         timeout, seed, saver, progress, rows, workers, scheduler)
        return
    for name in profiles:
        system, results, interrupted = _check_profile(
            name, invariants, depth, engine, overrides, bounds, faults, timeout, progress)
        new: list[Row] = []
        for inv in invariants:
            r = results.get(inv)
            if r is None or system is None:
                continue
            row = Row(name, inv, r, system.expected(inv), faults)
            rows.append(row)
            new.append(row)
            progress.advance()
            if r.status == VIOLATED:
                row.trace = saver.save(trace_from_steps(system, r.steps, inv, engine, seed))
        if interrupted:
            raise KeyboardInterrupt
        if prove and system is not None:
            for row in new:
                if row.result.status == HOLDS:
                    row.result = _prove(system, row.invariant, depth, timeout, row.result,
                                        certificate_folder(saver.out),
                                        lambda text, name=name: progress.note(f"{name}: {text}"))


def _run_distributed(profiles: list[str], invariants: list[str], depth: int, engine: str,
                     overrides: dict[str, Any], bounds: Bounds, faults: bool, prove: bool,
                     timeout: float | None, seed: int, saver: Saver, progress: Progress,
                     rows: list[Row], workers: int, scheduler: str | None) -> None:
    """`run_check` on worker processes or a cluster: a task per profile, each checked as
    the serial path checks it; rows appended in the serial order, also when interrupted
    (then with every result the tasks had settled)."""
    from model.system import System
    from search import distribute
    from search.traces.itf import trace_from_steps

    tasks = distribute.plan(profiles, invariants, depth, engine, overrides, bounds.as_dict(),
                            faults, prove, timeout, certificate_folder(saver.out))
    done: dict[int, list[Row]] = {}

    def on_output(task: distribute.Task, output: dict[str, Any]) -> None:
        error = output.get("error")
        if error:
            if os.environ.get("ALLOCHECK_DEBUG") and error.get("traceback"):
                print(error["traceback"], file=sys.stderr)
            raise InternalError(f"{task.profile}: {error['message']}")
        system = System.build(task.profile, bounds=bounds, faults=faults, overrides=overrides)
        new: list[Row] = []
        for inv in invariants:
            got = output["results"].get(inv)
            if got is None:
                continue
            r = distribute.result_from_json(got, system)
            row = Row(task.profile, inv, r, system.expected(inv), faults)
            new.append(row)
            progress.advance()
            if r.status == VIOLATED:
                row.trace = saver.save(trace_from_steps(system, r.steps, inv, engine, seed))
        done[task.index] = new

    try:
        if scheduler is not None:
            try:
                distribute.run_dask(scheduler, tasks, on_output, progress.note)
            except distribute.SetupError as e:
                raise UsageError(str(e)) from None
        else:
            distribute.run_local(tasks, min(workers, len(tasks)), on_output, progress.note)
    finally:
        for i in sorted(done):
            rows.extend(done[i])


def certificate_folder(out: Path | None) -> str:
    """Where --prove saves certificates: $ALLOCHECK_CERTIFICATES if set, else
    `certificates/` under --out (the counterexamples' folder, default counterexamples/)."""
    return (os.environ.get("ALLOCHECK_CERTIFICATES")
            or os.path.join(out if out is not None else DEFAULT_OUT, "certificates"))


def _prove(system: System, inv: str, depth: int, timeout: float | None, bounded: Result,
           folder: str | None = None, tick: Callable[[str], None] | None = None) -> Result:
    """--prove on an invariant that holds to `depth`: IC3 (search.engines.pdr). PROVED
    only with an inductive invariant that a separate plain z3 check accepted and that is
    saved as a certificate under `folder` (default `certificate_folder(None)`; `python -m
    search certify FILE` checks it again); anything else keeps the bounded result, with
    "not proved: why" in its detail."""
    from search.engines import certificate, pdr

    try:
        with _deadline(timeout):
            proof = pdr.prove(system, inv, timeout, tick)
    except BaseException as e:
        if not _timed_out(e):
            raise
        bounded.detail = f"{bounded.detail}; not proved: timeout after {timeout:g}s"
        return bounded
    r = proof.result
    if r.status != PROVED or proof.certificate is None:
        bounded.detail = f"{bounded.detail}; {r.detail}"
        return bounded
    folder = folder or certificate_folder(None)
    try:
        path = certificate.save(proof.certificate, folder)
    except OSError as e:  # no certificate, no proof
        bounded.detail = (f"{bounded.detail}; not proved: the certificate could not be saved "
                          f"under {echo(folder)}: {_os_reason(e)}")
        return bounded
    r.seconds += bounded.seconds
    r.certificate = str(path)
    r.detail = f"{r.detail}; certificate {path} (checked in {proof.check_seconds:.1f}s)"
    return r


def describe(row: Row, depth: int) -> str:
    r = row.result
    if r.status == VIOLATED:
        return f"violated at depth {r.depth}"
    if r.status == PROVED:  # only with a certificate a plain z3 call has checked
        return "proved (certified)"
    if r.status == HOLDS:
        if r.detail.startswith("exhaustive"):
            return f"holds in every reachable state (exhausted at depth {r.depth})"
        return f"holds to depth {r.depth}"
    return f"unknown ({r.detail.split(';')[0]})" if r.detail else "unknown"


def print_table(rows: list[Row], depth: int, engine: str, bounds: Bounds, faults: bool,
                stream: Any = None) -> None:
    stream = stream or sys.stdout
    scope = ",".join(f"{k}={v}" for k, v in bounds.as_dict().items())
    print(f"allocheck {engine} to depth {depth}; bounds {scope}; page-table allocation "
          f"failures {'on' if faults else 'off'}", file=stream)
    print(f"{'profile':<15}{'invariant':<22}{'result':<28}{'declared':<10}{'match':<7}"
          "trace or certificate",
          file=stream)
    for row in rows:
        m = {True: "yes", False: "NO", None: "-"}[row.matches]
        # a violation's trace, or the certificate of a proof (`certify FILE` re-checks it)
        trace = row.trace or row.result.certificate or (
            "(not saved)" if row.result.status == VIOLATED and row.extra.get("save_failed") else "")
        print(f"{row.profile:<15}{row.invariant:<22}{describe(row, depth):<28}"
              f"{row.expected or '-':<10}{m:<7}{printable(trace)}", file=stream)
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
    """12 an undeclared violation; 13 a declared violation the search finished without;
    3 some result unknown (nothing settled contradicts the history); else 0."""
    if any(r.result.status == VIOLATED and r.expected != VIOLATED for r in rows):
        return EXIT_UNDECLARED
    if any(r.expected == VIOLATED and r.result.status in (HOLDS, PROVED) for r in rows):
        return EXIT_HISTORY_LOST
    if any(r.result.status == UNKNOWN for r in rows):
        return EXIT_UNKNOWN
    return EXIT_OK


def cmd_check(argv: Sequence[str]) -> int:
    from invariants import INVARIANTS
    from model.bounds import DEFAULT_BOUNDS, Bounds
    from model.profiles import PROFILES, get_profile

    a = _check_parser().parse_args(argv)
    profiles = list(dict.fromkeys(a.profile)) or list(PROFILES)
    for p in profiles:
        get_profile(p)
    invariants = list(dict.fromkeys(a.invariant)) or list(INVARIANTS)
    for i in invariants:
        if i not in INVARIANTS:
            raise UsageError(f"unknown invariant {echo(i)}; known: {', '.join(INVARIANTS)}")
    overrides = parse_overrides(a.set)
    for p in profiles:
        get_profile(p).flags.with_overrides(overrides)
    bounds = Bounds.parse(a.bounds) if a.bounds else DEFAULT_BOUNDS
    if a.scheduler is not None and a.workers is not None:
        raise UsageError("--workers is for this machine; with --scheduler the cluster's "
                         "workers run the checks")
    if a.workers is None:
        from search.distribute import default_workers

        a.workers = default_workers()
    # checked even with --no-save, before any work: a typo must not cost a long run;
    # with saving on, a file is created and removed there, so a folder we cannot write to
    # stops the run now rather than losing its results at the end
    out_dir = _out_dir(a.out, create=not a.no_save)
    saver = Saver(None if a.no_save else out_dir)
    total = len(profiles) * len(invariants)
    progress = Progress(total, bar=not a.json)
    rows: list[Row] = []
    t0 = time.monotonic()
    interrupted = False
    try:
        run_check(profiles, invariants, a.depth, a.engine, overrides, bounds, a.faults,
                  a.prove, a.timeout, a.seed, saver, progress, rows, workers=a.workers,
                  scheduler=a.scheduler)
    except BaseException as e:
        if not _interrupted(e):
            raise
        _ignore_interrupts()
        interrupted = True
    finally:
        progress.close()
    for row in rows:
        if row.result.status == VIOLATED and row.trace is None and saver.out is not None:
            row.extra["save_failed"] = True
    if a.json:
        print(json.dumps({
            "allocheck": _version(), "engine": a.engine, "depth": a.depth,
            "bounds": bounds.as_dict(), "faults": a.faults, "overrides": overrides,
            "seed": a.seed, "interrupted": interrupted,
            "seconds": round(time.monotonic() - t0, 3),
            "results": [r.as_json() for r in rows],
            "not_saved": len(saver.failed),
        }, indent=2))
    else:
        print_table(rows, a.depth, a.engine, bounds, a.faults)
    return _finish(rows, total, interrupted, saver, exit_code)


def _finish(rows: list[Row], total: int, interrupted: bool, saver: Saver,
            code: Callable[[list[Row]], int]) -> int:
    """The one stderr line of a run that did not simply finish, and its exit code."""
    flush_stdout()
    lost = saver.summary()
    if interrupted:
        saved = (f"; {len(saver.saved)} trace{'s' if len(saver.saved) != 1 else ''} saved under "
                 f"{echo(str(saver.out))}" if saver.out is not None else "")
        say(f"interrupted: {len(rows)} of {total} results finished (shown above){saved}"
            + (f"; {lost}" if lost else ""))
        return EXIT_INTERRUPTED
    if lost:
        say(f"{lost} (the results are above)")
        return EXIT_OUTPUT
    return code(rows)


def _version() -> str:
    from search.traces.itf import allocheck_version

    return allocheck_version()


# ---- list, replay, show, catalog ------------------------------------------------------


def cmd_list(argv: Sequence[str]) -> int:
    from invariants import INVARIANTS
    from invariants import doc as invariant_doc
    from model.actions import ACTIONS
    from model.profiles import FLAG_INFO, PROFILES

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
    print("\nActions of the built-in search:")
    for name, act in ACTIONS.items():
        first = act.doc.split("\n")[0]
        print(f"  {name:<26}({', '.join(act.params)}) {first}")
    print("\nCalls only scenarios make (? = the model may choose it; scenarios/README.md):")
    from model.actions.base import REGISTRY

    for act in (a for a in REGISTRY if not a.builtin):
        params = ", ".join(q + ("?" if q in act.implicit else "") for q in act.params)
        first = act.doc.split("\n")[0]
        print(f"  {act.name:<26}({params}) {first}")
    return EXIT_OK


def _print_text(text: str) -> None:
    """Text that carries anything from a file: each line printed with its control
    characters escaped (the loader admits none; this holds for every future field)."""
    print("\n".join(printable(line) for line in text.split("\n")))


def cmd_replay(argv: Sequence[str]) -> int:
    from model.profiles import get_profile
    from search.traces.itf import load
    from search.traces.replay import replay

    p = _Parser(prog="python -m search replay",
                description="Re-execute saved traces on the concrete model: exit 0 when all "
                "reproduce, 1 when one does not (with the first diverging step), 2 bad input.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--profile", default=None, help="replay under another kernel profile")
    p.add_argument("--set", action="append", default=[], metavar="FLAG=VALUE")
    a = p.parse_args(argv)
    overrides = parse_overrides(a.set)
    if a.profile is not None:
        get_profile(a.profile)
    traces = [(f, _load_any(f, load)) for f in a.files]
    code = EXIT_OK
    for f, trace in traces:
        rep = replay(trace, profile=a.profile, overrides=overrides or None)
        print(f"{printable(f)}:")  # one line each: a newline in a name is escaped too
        for line in rep.narration:
            print(f"  {printable(line)}")
        print(f"  => {'reproduced' if rep.reproduced else 'NOT reproduced'}: "
              f"{printable(rep.reason)}")
        if not rep.reproduced:
            code = EXIT_NOT_REPRODUCED
    return code


def _load_any(path: str, load: Callable[[str], Any]) -> Any:
    """A trace file, or a scenario (`.calls`): the two are interchangeable inputs."""
    if path.endswith(".calls"):
        from search.scenario_cli import trace_of

        return trace_of(path)
    return load(path)


def _verified(trace: Any) -> Any:
    """Narrate only what the model confirms: a trace whose recorded invariant holds at its
    end under the model is shown as a plain run, with a note on stderr."""
    import dataclasses

    from invariants import INVARIANTS

    if trace.invariant is None:
        return trace
    system = trace.system()
    if INVARIANTS[trace.invariant](trace.states[-1], system.ctx, _concrete_logic()):
        print(f"allocheck: the trace records {trace.invariant}, but it holds after the last step "
              "under the model: shown as a plain run", file=sys.stderr)
        return dataclasses.replace(trace, invariant=None)
    return trace


def _concrete_logic() -> Any:
    from model.logic import CONCRETE

    return CONCRETE


def cmd_show(argv: Sequence[str]) -> int:
    from search.traces.graph import explain, render_dot, render_mermaid, render_png, render_text
    from search.traces.itf import load

    p = _Parser(prog="python -m search show",
                description="Narrate or draw a saved trace, with its causal slice.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--slice", action="store_true", help="only the steps the violation depends on")
    p.add_argument("--format", choices=("text", "dot", "mermaid", "png", "calls"), default="text",
                   help="calls: the trace as a scenario file (python -m search run takes it)")
    p.add_argument("--output", default=None,
                   help="PNG file to write (default: FILE with .png), written atomically; an "
                   "existing file or link there is replaced, a folder or device refused")
    a = p.parse_args(argv)
    target = None
    if a.format == "png":  # checked before the work
        target = _output_file(a.output if a.output is not None
                              else a.file.removesuffix(".itf.json") + ".png")
    elif a.output is not None:
        raise UsageError("--output is for --format png")
    trace = _verified(_load_any(a.file, load))
    if a.format == "calls":
        from search.traces.scenario_file import from_steps

        _print_text(from_steps(list(trace.steps), a.file, trace.profile, trace.bounds.as_dict(),
                               trace.faults, trace.overrides,
                               comment=f"the calls of {a.file}\n{trace.description}"))
    elif a.format == "text":
        _print_text(render_text(trace, slice_only=a.slice))
        print()
        _print_text(explain(trace))
    elif a.format == "dot":
        _print_text(render_dot(trace, slice_only=a.slice))
    elif a.format == "mermaid":
        _print_text(render_mermaid(trace, slice_only=a.slice))
    else:
        assert target is not None
        try:
            written = render_png(trace, target, slice_only=a.slice)
        except ImportError:
            raise UsageError("PNG needs matplotlib: pip install 'allocheck[png]'") from None
        except OSError as e:
            raise OutputError(f"--output {echo(str(target))}: cannot write the PNG: "
                              f"{_os_reason(e)}") from None
        print(printable(str(written)))
    return EXIT_OK


def cmd_catalog(argv: Sequence[str]) -> int:
    from model.bounds import DEFAULT_BOUNDS, NUMA_BOUNDS
    from model.profiles import PROFILES

    p = _Parser(prog="python -m search catalog",
                description="Regenerate counterexamples/: the shortest trace of every declared "
                "violation of every built-in profile, with failures off and on (BMC).")
    p.add_argument("--depth", type=_depth, default=10)
    p.add_argument("--out", type=_folder, default=DEFAULT_OUT, metavar="DIR")
    a = p.parse_args(argv)
    saver = Saver(_out_dir(a.out))
    rows: list[Row] = []
    plan = [(faults, DEFAULT_BOUNDS, prof, sorted(prof.violated_with_faults if faults else prof.violated))
            for faults in (False, True) for prof in PROFILES.values()]
    # what two NUMA nodes add, at the smallest scope that has them
    plan += [(False, NUMA_BOUNDS, prof, sorted(prof.violated_with_nodes)) for prof in PROFILES.values()]
    # with faults on, only what the faults add: the rest is in the first pass
    plan = [(f, b, prof, declared) for f, b, prof, declared in plan if declared]
    total = sum(len(declared) for _, _, _, declared in plan)
    interrupted = False
    try:
        for faults, bounds, prof, declared in plan:
            first = len(rows)
            run_check([prof.name], declared, a.depth, "bmc", {}, bounds, faults,
                      False, None, 0, saver, Progress(len(declared)), rows)
            for r in rows[first:]:
                r.extra["numa"] = bounds.nodes > 1
    except BaseException as e:
        if not _interrupted(e):
            raise
        _ignore_interrupts()
        interrupted = True
    for r in rows:
        how = "faults" if r.faults else "nodes=2" if r.extra.get("numa") else ""
        print(f"{r.profile:<15}{r.invariant:<22}{how:<8}"
              f"{describe(r, a.depth):<28}{printable(r.trace or '')}")
    return _finish(rows, total, interrupted, saver, exit_code)


def cmd_certify(argv: Sequence[str]) -> int:
    """`certify FILE`: check a saved proof certificate again, from scratch: the system is
    rebuilt from the file's profile, overrides, bounds and faults, the formula parsed
    (never evaluated) against its state variables, and the three conditions asked of a
    fresh plain z3 solver. Exit 0 valid, 1 invalid, 3 z3 could not tell, 2 bad input."""
    from search.engines import certificate

    p = _Parser(prog="python -m search certify",
                description="Re-check a proof certificate (written by --prove): the initial "
                "state satisfies its inductive invariant, every action instance preserves it, "
                "and it implies the invariant. Prints valid or invalid: the condition that "
                "failed. Exit 0 valid, 1 invalid, 3 unknown (z3 gave up or --timeout), "
                "2 bad input.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--timeout", type=_timeout, default=None, metavar="SECONDS",
                   help="limit on z3's time for the three checks (default: none)")
    a = p.parse_args(argv)
    try:
        cert = certificate.load(a.file)
        verdict = certificate.check(cert, a.timeout)
    except certificate.CertificateError as e:
        raise UsageError(f"{str(e) if str(e).startswith(a.file) else a.file + ': ' + str(e)}"
                         ) from None
    if verdict.valid is None:
        print(f"unknown: {printable(verdict.reason)}")
        flush_stdout()
        say(f"{a.file}: not checked: {verdict.reason}")
        return EXIT_UNKNOWN
    if not verdict.valid:
        print(f"invalid: {printable(verdict.reason)}")
        flush_stdout()
        say(f"{a.file}: certificate rejected: {verdict.reason}")
        return EXIT_NOT_REPRODUCED
    print(f"valid: {cert.profile} {cert.invariant} proved at bounds "
          + ",".join(f"{k}={v}" for k, v in cert.bounds.items())
          + (" with faults" if cert.faults else "")
          + (f" with {', '.join(f'{k}={v}' for k, v in cert.overrides.items())}"
             if cert.overrides else "")
          + f" (checked in {verdict.seconds:.1f}s)")
    if not verdict.same_encoding:
        print("note: the model's encoding changed since the certificate was made; it is "
              "valid for the model as it is now")
    return EXIT_OK


def cmd_run(argv: Sequence[str]) -> int:
    """`run FILE...`: scenarios (search/scenario_cli.py), under this module's error and
    interrupt handling."""
    from search.scenario_cli import cmd_run as run_scenarios

    return run_scenarios(argv)


def _history(argv: Sequence[str]) -> int:
    """`history [--evidence]`: the README's history table, or the evidence behind it."""
    from search.history_table import cmd_history

    return cmd_history(argv)


def _fragmentation(argv: Sequence[str]) -> int:
    """`fragmentation`: direct-map splits per design (search/fragmentation_cli.py)."""
    from search.fragmentation_cli import cmd_fragmentation

    return cmd_fragmentation(argv)


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "list": cmd_list, "replay": cmd_replay, "show": cmd_show, "catalog": cmd_catalog,
    "run": cmd_run, "history": _history, "certify": cmd_certify,
    "fragmentation": _fragmentation,
}


# ---- main -----------------------------------------------------------------------------


def say(message: str) -> None:
    """One line on stderr, `allocheck: ` first, made safe by `one_line`. A stderr that
    cannot be written is no reason for a traceback."""
    with contextlib.suppress(OSError, ValueError):
        print(f"allocheck: {one_line(message)}", file=sys.stderr, flush=True)


def flush_stdout() -> None:
    """Flush stdout now, so that a write error (a full disk, /dev/full, a closed pipe)
    happens inside `main`, where it is one line and an exit code, and not at exit."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        _silence_stdout()
        raise OutputError(f"cannot write to standard output: {_os_reason(e)}") from None


def _silence_stdout() -> None:
    """After stdout failed: what is still buffered goes nowhere, so that Python's flush at
    exit does not fail again with a second message."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        out = sys.stdout.fileno()  # first: a captured stdout (tests) has none
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, out)
        os.close(fd)


def _stdout_failed() -> bool:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()
        return True
    return False


def main(argv: Sequence[str]) -> int:
    with _interrupt_handling():
        return _main(list(argv))


_BAD_INPUT = frozenset({("search.traces.itf", "TraceError"), ("model.profiles", "ProfileError"),
                        ("model.bounds", "BoundsError"), ("search.scenario_cli", "UsageError"),
                        ("search.traces.scenario_file", "ScenarioError")})


def _bad_input(e: BaseException) -> bool:
    """A trace, profile or bounds error (exit 2), told by class without importing the
    model: `main` must not import anything outside its handlers."""
    return any((c.__module__, c.__qualname__) in _BAD_INPUT for c in type(e).__mro__)


def _main(argv: list[str]) -> int:
    try:
        command = SUBCOMMANDS.get(argv[0]) if argv else None
        code = command(argv[1:]) if command is not None else cmd_check(argv)
        flush_stdout()
        return code
    except KeyboardInterrupt:
        _ignore_interrupts()
        say("interrupted")
        return EXIT_INTERRUPTED
    except SystemExit as e:  # argparse after --help: its code, for a caller in-process too
        if _stdout_failed():
            say("cannot write the output")
            return EXIT_OUTPUT
        return e.code if isinstance(e.code, int) else EXIT_OK
    except UsageError as e:
        say(str(e))
        return EXIT_USAGE
    except OutputError as e:
        say(str(e))
        return EXIT_OUTPUT
    except InternalError as e:
        say(f"internal error: {e}")
        return EXIT_INTERNAL
    except BrokenPipeError:
        # the reader went away (`| head`): not an error of ours; keep Python from
        # complaining again when it flushes stdout at exit
        _silence_stdout()
        return EXIT_OK
    except OSError as e:
        if e.filename is None:  # a write to an open stream: stdout, as the commands go
            _stdout_failed()
            say(f"cannot write the output: {_os_reason(e)}")
        else:
            where = f"{echo(os.fsdecode(e.filename))}: " if e.filename is not None else ""
            say(f"{where}{_os_reason(e)}")
        return EXIT_OUTPUT
    except Exception as e:
        if _SIG.interrupted:  # the interrupt, surfacing as another exception
            _ignore_interrupts()
            say("interrupted")
            return EXIT_INTERRUPTED
        if _bad_input(e):
            say(str(e))
            return EXIT_USAGE
        if os.environ.get("ALLOCHECK_DEBUG"):
            traceback.print_exc()
        say(f"internal error: {type(e).__name__}: {e} (ALLOCHECK_DEBUG=1 shows the traceback)")
        return EXIT_INTERNAL
