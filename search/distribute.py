"""The check matrix on every core, or on a Dask cluster.

A task is one profile's check: every requested invariant of one (profile, faults)
configuration, in one BMC call that shares one solver, exactly as the serial path checks
it. Splitting a profile further, one task per (profile, invariant), gives the same
verdicts and depths (all 56 at depth 6) but loses the lemmas the invariants lend each
other: measured at depth 6 over the 8 built-in profiles, 148 s of CPU instead of 52 s,
and its longest task (v6.0 refcount_sanity, 15 s) takes longer than the whole v6.0 check
(11 s). Tasks start largest first (`largest_first`); results keep the serial order.

Every task runs in a fresh interpreter (`python -m search.distribute`, the task as JSON on
stdin, progress and the result as JSON lines on stdout). That matters twice:

- A task is alone in its process: its check's settings, signals and timeouts are its
  own, and a crash ends one task, not the worker. (z3's answer depends on what its
  context made before; `_check_profile` starts each profile with a new one, so a
  task's counterexample is the one `python -m search --profile P` finds wherever it runs,
  and the serial run's too.)
- z3's global context is not thread-safe; a Dask worker runs its tasks in threads. There
  each thread only waits for its task's process.

Locally, `run_local` runs the tasks from a thread pool, one process each. With a
scheduler, `run_dask` submits `run_on_worker(task, stop)` to a Dask cluster through
`distributed.Client`: plain functions with JSON-able arguments (profile name, overrides,
bounds as a dict, faults, invariants, depth, timeout); the worker rebuilds the System.

Interrupts: a task's process handles Ctrl-C as the command line does (it stops and
returns every result it had settled). On an interrupt the queued tasks are cancelled
(`shutdown(cancel_futures=True)`, `Client.cancel`), every running task is sent SIGINT
(on a cluster through a `distributed.Event` the tasks poll) and, after `GRACE` seconds,
killed. A task's process ended by SIGINT, whoever sent it, interrupts the whole run.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.result import InternalError

# seconds a stopped task has to return what it settled, then it is killed: a child on a
# loaded machine may be inside one long z3 call (a substitution, an encoding) that
# Python's signal handler waits for, and what it settled must not be lost (a CI run
# lost both tasks' results at 5 s)
GRACE = 20.0
POLL = 0.2  # seconds between looks at the stop flag (a cluster Event: a scheduler call)
_TAG = "allocheck-task"  # first word of every line a task's process prints for us
_NOISE = 20  # lines of anything else a task's process printed, kept for error messages


class SetupError(Exception):
    """The cluster cannot be used: Dask missing, the scheduler unreachable (bad input)."""


@dataclass(frozen=True)
class Task:
    """One profile's check, everything a fresh process needs to rebuild it, JSON-able."""

    index: int  # position in the serial order of the run
    profile: str
    invariants: tuple[str, ...]
    depth: int
    engine: str
    overrides: dict[str, Any]
    bounds: dict[str, int]
    faults: bool
    prove: bool = False
    timeout: float | None = None
    size: int = 0  # action instances: the larger, the longer its check (started first)
    ticks: bool = True  # print progress lines (not read on a cluster)
    # install the interrupt handler even when SIGINT came in ignored (a Dask worker's
    # child: there is no terminal, and SIGINT is how it is stopped)
    interruptible: bool = False
    certificates: str | None = None  # where --prove saves certificates (cli.certificate_folder)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["invariants"] = list(self.invariants)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Task:
        return cls(**{**d, "invariants": tuple(d["invariants"])})


def plan(profiles: Sequence[str], invariants: Sequence[str], depth: int, engine: str,
         overrides: dict[str, Any], bounds: dict[str, int], faults: bool, prove: bool,
         timeout: float | None, certificates: str | None = None) -> list[Task]:
    """The tasks of a run, in the order the serial path checks them: one per profile.
    Each with its size, the number of action instances of its System (built here, which
    is cheap): at depth 6, 54 instances took 1.5 s of CPU, 66 about 5 s, 82 about 7 s and
    86 11 s."""
    from model.bounds import Bounds
    from model.system import System

    b = Bounds(**bounds)
    return [Task(i, p, tuple(invariants), depth, engine, dict(overrides), dict(bounds), faults,
                 prove, timeout, certificates=certificates,
                 size=len(System.build(p, bounds=b, faults=faults, overrides=overrides).instances))
            for i, p in enumerate(profiles)]


def largest_first(tasks: Sequence[Task]) -> list[Task]:
    """The order to start tasks in: the longest first, so that no long check starts last
    while the other workers sit idle (the results keep the serial order whatever this is)."""
    return sorted(tasks, key=lambda t: (-t.size, t.index))


def default_workers() -> int:
    """Every core this process may run on (the affinity mask, not only the count)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        n = os.process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count()
    return max(1, n or 1)


# ---- in the task's process --------------------------------------------------------------


def result_json(r: Any) -> dict[str, Any]:
    """A Result as plain data; the steps by action name and parameters."""
    return {"invariant": r.invariant, "engine": r.engine, "status": r.status, "depth": r.depth,
            "steps": [[i.name, [list(kv) for kv in i.items]] for i in r.steps],
            "seconds": r.seconds, "detail": r.detail, "certificate": r.certificate}


def result_from_json(d: dict[str, Any], system: Any) -> Any:
    """A Result again, its steps the instances of `system` (built by the caller)."""
    from search.result import Result

    steps = []
    for name, items in d["steps"]:
        inst = system.by_key.get((name, tuple((k, v) for k, v in items)))
        if inst is None:
            raise InternalError(f"a task returned the step {name}{items!r}, which "
                                f"{system.profile.name} does not have")
        steps.append(inst)
    return Result(d["invariant"], d["engine"], d["status"], d["depth"], steps, d["seconds"],
                  d["detail"], d.get("certificate"))


class _Ticks:
    """What `search.cli._check_profile` takes as its progress: only `note` is called."""

    def __init__(self, tick: Callable[[str], None] | None) -> None:
        self.tick = tick

    def note(self, label: str) -> None:
        if self.tick is not None:
            self.tick(label)

    def about(self, profile: str) -> Callable[[str], None]:
        return lambda label: self.note(f"{profile}: {label}")


def run_task(task: Task, tick: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Check one task in this process, as the serial path checks a profile (the same
    `_check_profile` and `_prove`, timeouts and interrupts included). Returns
    {"index", "profile", "results": {invariant: result_json}, "interrupted", "error"}:
    on an interrupt, the results settled by then; on an error, none."""
    from model.bounds import Bounds
    from search import cli
    from search.result import HOLDS

    out: dict[str, Any] = {"index": task.index, "profile": task.profile, "results": {},
                           "interrupted": False, "error": None}
    invariants = list(task.invariants)
    try:
        with cli._interrupt_handling():
            system, results, interrupted = cli._check_profile(
                task.profile, invariants, task.depth, task.engine, dict(task.overrides),
                Bounds(**task.bounds), task.faults, task.timeout, _Ticks(tick))
            try:
                if task.prove and system is not None and not interrupted:
                    for inv in invariants:
                        r = results.get(inv)
                        if r is not None and r.status == HOLDS:
                            results[inv] = cli._prove(system, inv, task.depth, task.timeout, r,
                                                      task.certificates,
                                                      _Ticks(tick).about(task.profile))
            except BaseException as e:
                if not cli._interrupted(e):
                    raise
                cli._ignore_interrupts()
                interrupted = True
    except InternalError as e:
        out["error"] = {"kind": "internal", "message": str(e)}
        return out
    except Exception as e:
        if cli._SIG.interrupted:  # the interrupt, surfacing as another exception
            out["interrupted"] = True
            return out
        import traceback

        out["error"] = {"kind": "crash", "message": f"{type(e).__name__}: {e}",
                        "traceback": traceback.format_exc()}
        return out
    out["interrupted"] = interrupted
    out["results"] = {inv: result_json(results[inv]) for inv in invariants if inv in results}
    return out


def _exit_quietly(signum: int, frame: Any) -> None:
    os._exit(130)  # interrupted before the task started: nothing settled, nothing to say


def _child_main() -> int:
    """`python -m search.distribute`: one task from stdin, its lines on stdout."""
    # SIGINT ignored from the start: a background job's, kept (unless on a cluster)
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if not ignored:
        signal.signal(signal.SIGINT, _exit_quietly)
    task = Task.from_json(json.loads(sys.stdin.read()))
    if ignored and task.interruptible:
        signal.signal(signal.SIGINT, _exit_quietly)

    def tick(label: str) -> None:
        print(f"{_TAG} tick {json.dumps(label)}", flush=True)

    # the interrupt handler of the command line replaces _exit_quietly from here on
    out = run_task(task, tick if task.ticks else None)
    print(f"{_TAG} result {json.dumps(out)}", flush=True)
    return 0


# ---- one task in a fresh process, from any thread ----------------------------------------


def _child_env() -> dict[str, str]:
    """This interpreter's environment, with the folder `search` was imported from first on
    the path: the task's process runs this very code."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def run_isolated(task: Task, on_tick: Callable[[str], None] | None = None,
                 stop: Callable[[], bool] | None = None, grace: float = GRACE
                 ) -> dict[str, Any]:
    """Run `task` in a fresh `python -m search.distribute` and return its output (see
    `run_task`). When `stop()` turns true the process is sent SIGINT, returns what it had
    settled, and is killed if it has not within `grace` seconds."""
    interrupted_out = {"index": task.index, "profile": task.profile, "results": {},
                       "interrupted": True, "error": None}
    if stop is not None and stop():
        return interrupted_out
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.distribute"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
        errors="replace", env=_child_env())
    found: list[dict[str, Any]] = []
    noise: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith(f"{_TAG} "):  # a warning, a traceback: kept for errors
                noise.append(line.rstrip("\n"))
                del noise[:-_NOISE]
                continue
            kind, _, rest = line.removeprefix(f"{_TAG} ").partition(" ")
            if kind == "tick" and on_tick is not None:
                on_tick(json.loads(rest))
            elif kind == "result":
                found.append(json.loads(rest))

    reader = threading.Thread(target=read, name=f"allocheck-read-{task.profile}", daemon=True)
    reader.start()
    try:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.write(json.dumps(task.to_json()))
            proc.stdin.close()
        stopped_at: float | None = None
        while reader.is_alive():
            reader.join(POLL)
            if stopped_at is None and stop is not None and reader.is_alive() and stop():
                stopped_at = time.monotonic()
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
            if stopped_at is not None and time.monotonic() - stopped_at > grace:
                proc.kill()
                break
        code = proc.wait()
        reader.join(1.0)
    finally:
        if proc.poll() is None:  # this thread was stopped itself: never leave the process
            proc.kill()
            proc.wait()
    if found:
        return found[-1]
    if code in (130, -signal.SIGINT) or (stop is not None and stop()):
        return interrupted_out
    why = f": {noise[-1]}" if noise else ""
    return {**interrupted_out, "interrupted": False,
            "error": {"kind": "crash", "message": f"the process checking {task.profile} "
                      f"ended with exit code {code} and no result{why}",
                      "traceback": "\n".join(noise)}}


# ---- the matrix on this machine ---------------------------------------------------------

OnOutput = Callable[[Task, dict[str, Any]], None]


def _deliver(task: Task, out: dict[str, Any], on_output: OnOutput) -> bool:
    """Hand a task's output over; True when the task was interrupted."""
    on_output(task, out)
    return bool(out.get("interrupted"))


def run_local(tasks: Sequence[Task], workers: int, on_output: OnOutput,
              note: Callable[[str], None] = lambda label: None, grace: float = GRACE) -> None:
    """Run `tasks` on `workers` processes at a time. `on_output(task, output)` is called in
    this thread as each task ends (an error in the output is for it to raise). A task
    that was interrupted interrupts the run: KeyboardInterrupt, after every running task
    has returned what it settled. Any exception here (Ctrl-C included) cancels what has not
    started and stops what has, then propagates."""
    stop = threading.Event()
    ticks: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
    labels: dict[int, str] = {}
    pool = cf.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="allocheck")
    futures = {
        pool.submit(run_isolated, t, lambda label, i=t.index: ticks.put((i, label)),
                    stop.is_set, grace): t
        for t in largest_first(tasks)
    }
    pending = set(futures)

    def show() -> None:
        while True:  # every tick is shown (a bar draws fast; lines are throttled)
            try:
                i, label = ticks.get_nowait()
            except queue.Empty:
                return
            labels[i] = label
            note("; ".join(labels[i] for i in sorted(labels)))

    try:
        while pending:
            done, pending = cf.wait(pending, timeout=POLL, return_when=cf.FIRST_COMPLETED)
            show()
            interrupted = False
            for f in sorted(done, key=lambda f: futures[f].index):
                labels.pop(futures[f].index, None)
                interrupted |= _deliver(futures[f], f.result(), on_output)
            if interrupted:
                raise KeyboardInterrupt
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        # a future cancelled by shutdown never counts as done for cf.wait: leave those out
        started = [f for f in pending if not f.cancelled()]
        done, _ = cf.wait(started, timeout=grace + 5 * POLL + 5)
        for f in sorted(done, key=lambda f: futures[f].index):
            if f.cancelled() or f.exception() is not None:
                continue
            with contextlib.suppress(Exception):
                _deliver(futures[f], f.result(), on_output)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---- the matrix on a Dask cluster -------------------------------------------------------


def run_on_worker(task: dict[str, Any], stop_event: str | None = None) -> dict[str, Any]:
    """The function a Dask worker runs: one task (as `Task.to_json`) in a fresh process.
    `stop_event` names a `distributed.Event`; once it is set, the task stops and returns
    what it settled (or nothing, if it had not started)."""
    t = Task.from_json({**task, "ticks": False, "interruptible": True})
    if stop_event is None:
        return run_isolated(t)
    from distributed import Event

    event = Event(stop_event)

    def stop() -> bool:
        try:
            return bool(event.is_set())
        except Exception:
            return True  # the scheduler is gone: nobody will read the result

    return run_isolated(t, stop=stop)


def connect(address: str, timeout: float = 10.0) -> Any:
    """A `distributed.Client` for `address`; SetupError when Dask is not installed or the
    scheduler does not answer within `timeout` seconds."""
    try:
        from distributed import Client
    except ImportError:
        raise SetupError("--scheduler needs Dask: pip install 'allocheck[cluster]'") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        raise SetupError(f"--scheduler {address!r}: cannot reach a Dask scheduler there: "
                         f"{type(e).__name__}: {e}") from None


def run_dask(address: str, tasks: Sequence[Task], on_output: OnOutput,
             note: Callable[[str], None] = lambda label: None, grace: float = GRACE,
             client: Any = None) -> None:
    """As `run_local`, on the Dask cluster whose scheduler is at `address` (or `client`)."""
    own = client is None
    client = connect(address) if own else client
    from distributed import Event
    run = uuid.uuid4().hex[:12]
    stop = Event(f"allocheck-stop-{run}", client=client)
    try:
        futures = {
            client.submit(run_on_worker, t.to_json(), stop.name, pure=False, retries=0,
                          key=f"allocheck-{run}-{t.index}-{t.profile}",
                          priority=t.size): t  # Dask runs higher priorities first
            for t in largest_first(tasks)
        }
        pending = sorted(futures, key=lambda f: futures[f].index)
        note(f"{len(tasks)} tasks on the cluster at {address}")
        try:
            while pending:
                done = [f for f in pending if f.done()]
                if not done:
                    time.sleep(POLL)  # a plain sleep: Ctrl-C ends it at once
                    continue
                pending = [f for f in pending if not f.done() or f not in done]
                interrupted = False
                for f in done:
                    interrupted |= _deliver(futures[f], _dask_result(f, futures[f]), on_output)
                note(f"{len(tasks) - len(pending)} of {len(tasks)} tasks done on the cluster "
                     f"at {address}")
                if interrupted:
                    raise KeyboardInterrupt
        except BaseException:
            with contextlib.suppress(Exception):
                stop.set()
            deadline = time.monotonic() + grace + 5 * POLL + 5
            while any(not f.done() for f in pending) and time.monotonic() < deadline:
                time.sleep(POLL)
            for f in pending:
                if f.done() and f.status == "finished":
                    with contextlib.suppress(Exception):
                        _deliver(futures[f], f.result(), on_output)
            with contextlib.suppress(Exception):
                client.cancel(list(futures))
            raise
    finally:
        with contextlib.suppress(Exception):
            stop.clear()
        if own:
            with contextlib.suppress(Exception):
                client.close()


def _dask_result(future: Any, task: Task) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as e:
        raise InternalError(f"the cluster could not run the check of {task.profile}: "
                            f"{type(e).__name__}: {e} (is allocheck installed on every "
                            "worker?)") from None


if __name__ == "__main__":
    sys.exit(_child_main())
