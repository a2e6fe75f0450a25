"""Mutation score of `model/` and `invariants/` against the fast checks (issue 13): every
small plausible mistake cosmic-ray can make in a module (a flipped comparison, a dropped
operand, a changed constant), and whether the fast checks catch it. Prints the score and
every survivor (file, line, operator, the mutated line); never asserts.

    pip install -e '.[mutation]'
    python benchmarks/mutation.py --jobs 2                 # every module in pyproject.toml
    python benchmarks/mutation.py invariants/no_leak.py    # some modules only
    python benchmarks/mutation.py --report                 # the saved results, combined

Configured in pyproject.toml, [tool.allocheck.mutation]: the module globs, the test command
(the fast checks, fastest first: `-x` stops at the first failure), a test command per
module where another file's tests are the ones that read it (`oracles`) and a per-mutant
timeout. cosmic-ray mutates files in place, so each job runs in a scratch git worktree of
HEAD (its own copy; the working tree is never touched), with PYTHONPATH pointing there.
Slow: each mutant runs its test command (about 3 to 70 s), about 4,800 mutants in all, so
the whole score takes several sessions: each module's result is saved as JSON under
`--results` (default docs/mutation/) with the commit it was measured at, and `--report`
adds them up, naming the modules changed since their measurement. A stopped run (Ctrl-C,
the end of a session) loses nothing: each module's cosmic-ray session is kept under
`--work` (default .mutation/, ignored by git) by commit, and the same command, or
`--commit REV` for a run begun at an older commit, goes on where it stopped.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def settings() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["allocheck"]["mutation"]


def modules(cfg: dict, chosen: list[str]) -> list[str]:
    if chosen:
        return chosen
    out: set[str] = set()
    for pattern in cfg["modules"]:
        out.update(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern))
    return sorted(out - set(cfg.get("exclude", [])))


def oracle(module: str, cfg: dict) -> str:
    """The test command that judges `module`'s mutants: its own (`oracles`), or the fast
    checks followed by the module's own tests (`extra`)."""
    for pattern, command in cfg.get("oracles", {}).items():
        if fnmatch.fnmatch(module, pattern):
            return command
    extra = [tests for pattern, tests in cfg.get("extra", {}).items()
             if fnmatch.fnmatch(module, pattern)]
    return " ".join([cfg["test-command"], *extra])


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the module's annotations are, as ((row, col), (end row, end col)); none unless
    it has `from __future__ import annotations`. Under that import (PEP 563) an annotation
    is kept as a string and never evaluated, and nothing in allocheck reads one back (no
    `get_type_hints`, no `Field.type`), so a mutant inside one (`int | None` -> `int - None`)
    cannot change behaviour: it is skipped, not run (each such survivor costs a whole run
    of the fast checks)."""
    tree = ast.parse(source)
    if not any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
               and any(a.name == "annotations" for a in n.names) for n in tree.body):
        return []
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
    return [((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0))
            for a in found]


def sampled(key: str, fraction: float, seed: int) -> bool:
    """Is the mutant named `key` in the seeded sample? The same for every run and machine
    (a hash, not Python's salted `hash`)."""
    if fraction >= 1.0:
        return True
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


ANNOTATION = "in an annotation (never evaluated)"
UNSAMPLED = "not in the sample"


def skip(session: Path, source: str, fraction: float, seed: int) -> None:
    """Mark the mutants that are not run as skipped, with the reason as their output: those
    inside an annotation, and those outside the seeded sample."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_spans(source)
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            why = None
            for m in item.mutations:
                start, end = tuple(m.start_pos), tuple(m.end_pos)
                if any(a <= start and end <= b for a, b in spans):
                    why = ANNOTATION
                elif not sampled(f"{m.module_path}:{start[0]}:{start[1]}:{m.operator_name}:"
                                 f"{m.occurrence}", fraction, seed):
                    why = UNSAMPLED
            if why is not None:
                db.set_result(item.job_id, WorkResult(output=why,
                                                      worker_outcome=WorkerOutcome.SKIPPED))


def run_module(module: str, cfg: dict, tree: Path, work: Path, fraction: float = 1.0,
               seed: int = 0) -> list[dict]:
    """cosmic-ray init (unless a session of this commit exists), exec (the mutants not yet
    judged) and dump for one module; the dump's records."""
    work.mkdir(parents=True, exist_ok=True)
    conf = work / (module.replace("/", "_") + ".toml")
    session = conf.with_suffix(".sqlite")
    conf.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        f"timeout = {float(cfg['timeout'])}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(oracle(module, cfg))}\n"
        "[cosmic-ray.distributor]\nname = \"local\"\n")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if not session.exists():
        # init writes the session under a temporary name: a stop during init leaves none
        fresh = session.with_suffix(".init")
        fresh.unlink(missing_ok=True)
        subprocess.run(["cosmic-ray", "init", str(conf), str(fresh)], cwd=tree, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        skip(fresh, (tree / module).read_text(), fraction, seed)
        os.replace(fresh, session)
    subprocess.run(["cosmic-ray", "exec", str(conf), str(session)], cwd=tree, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    dump = subprocess.run(["cosmic-ray", "dump", str(session)], cwd=tree, env=env, check=True,
                          capture_output=True, text=True).stdout
    return [json.loads(line) for line in dump.splitlines() if line.strip()]


def outcome(record: list) -> str:
    _item, result = record
    if result is None:
        return "pending"
    if result.get("worker_outcome") == "skipped":
        return {ANNOTATION: "annotation", UNSAMPLED: "unsampled"}.get(result.get("output"), "skipped")
    if result.get("worker_outcome") != "normal":
        return result.get("worker_outcome", "?")
    return result.get("test_outcome", "?")


def summarise(module: str, records: list, seconds: float, commit: str, cfg: dict,
              fraction: float = 1.0, seed: int = 0) -> dict:
    """One module's result as saved: counts by outcome (`annotation` and `unsampled`: not
    run), the sample it was measured on, and every survivor."""
    counts: dict[str, int] = {}
    survivors: list[str] = []
    for rec in records:
        kind = outcome(rec)
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "survived":
            for m in rec[0].get("mutations", []):
                survivors.append(f"{m['module_path']}:{m['start_pos'][0]} "
                                 f"{m['operator_name']} #{m['occurrence']}")
    return {"module": module, "commit": commit, "oracle": oracle(module, cfg),
            "mutants": len(records), "sample": fraction, "seed": seed, "outcomes": counts,
            "survivors": survivors, "seconds": round(seconds, 1)}


def save(result: dict, folder: Path) -> None:
    """Written whole or not at all: a temporary name, then a rename."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (result["module"].replace("/", "__") + ".json")
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, path)


def report(folder: Path, cfg: dict) -> int:
    """Every saved result added up; modules changed since their measurement are named."""
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    wanted = set(modules(cfg, []))
    done = {r["module"] for r in results}
    for r in results:
        stale = subprocess.run(["git", "diff", "--quiet", r["commit"], "--", r["module"]],
                               cwd=ROOT).returncode != 0
        k, sv = r["outcomes"].get("killed", 0), r["outcomes"].get("survived", 0)
        part = f" (sample {r['sample']:g}, seed {r['seed']})" if r.get("sample", 1.0) < 1.0 else ""
        print(f"{r['module']}: {r['mutants']} mutants{part}, {k} killed, {sv} survived at "
              f"{r['commit'][:10]}{' (changed since)' if stale else ''}")
    print(f"\nmeasured {len(done & wanted)} of {len(wanted)} modules; " + score(results))
    missing = sorted(wanted - done)
    if missing:
        print("not measured: " + ", ".join(missing))
    survivors(results)
    return 0


def score(results: list[dict]) -> str:
    """The score of these results: killed of those that ran the tests to an end."""
    killed = sum(r["outcomes"].get("killed", 0) for r in results)
    judged = killed + sum(r["outcomes"].get("survived", 0) for r in results)
    other = sum(r["mutants"] for r in results) - judged
    return (f"mutation score {100.0 * killed / judged if judged else 0.0:.1f}% ({killed} "
            f"killed of {judged} that ran the tests; {other} other)")


def survivors(results: list[dict]) -> None:
    for r in results:
        for sv in r["survivors"]:
            print(f"  survived: {sv}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("module", nargs="*", help="paths relative to the repository (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="modules at a time, each in a "
                    "worktree of its own (default 1)")
    ap.add_argument("--results", default=str(ROOT / "docs" / "mutation"),
                    help="where each module's result is saved (default docs/mutation/)")
    ap.add_argument("--report", action="store_true", help="add up the saved results only")
    ap.add_argument("--commit", default="HEAD", help="the commit to measure (default HEAD; "
                    "give an older one to go on with a run begun there)")
    ap.add_argument("--sample", type=float, default=1.0, help="run this fraction of each "
                    "module's mutants, a seeded sample (default 1: all)")
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    ap.add_argument("--work", default=str(ROOT / ".mutation"),
                    help="where sessions are kept by commit, so a stopped run goes on "
                    "(default .mutation/)")
    args = ap.parse_args()
    cfg = settings()
    folder = Path(args.results)
    if args.report:
        return report(folder, cfg)
    chosen = modules(cfg, args.module)
    got = subprocess.run(["git", "rev-parse", "--verify", "-q", args.commit + "^{commit}"],
                         cwd=ROOT, capture_output=True, text=True)
    if got.returncode != 0:
        print(f"mutation: no such commit: {args.commit}", file=sys.stderr)
        return 2
    commit = got.stdout.strip()
    if not 0.0 < args.sample <= 1.0:
        print(f"mutation: --sample must be in (0, 1], not {args.sample}", file=sys.stderr)
        return 2
    sessions = Path(args.work) / commit[:12]
    if args.sample < 1.0:
        sessions = sessions / f"sample-{args.sample:g}-seed-{args.seed}"
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        trees = [Path(tmp) / f"tree{j}" for j in range(max(1, args.jobs))]
        for tree in trees:
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT,
                           check=True, capture_output=True)
        free = list(trees)

        def one(module: str) -> dict:
            tree = free.pop()
            try:
                t = time.monotonic()
                records = run_module(module, cfg, tree, sessions, args.sample, args.seed)
                result = summarise(module, records, time.monotonic() - t, commit, cfg,
                                   args.sample, args.seed)
            finally:
                free.append(tree)
            save(result, folder)
            o = result["outcomes"]
            print(f"{module}: {result['mutants']} mutants, {o.get('killed', 0)} killed, "
                  f"{o.get('survived', 0)} survived in {result['seconds']:.0f} s", flush=True)
            return result

        try:
            with ThreadPoolExecutor(max_workers=len(trees)) as pool:
                results = list(pool.map(one, chosen))
        finally:
            for tree in trees:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                               capture_output=True)
    print(f"\n{score(results)} in {time.monotonic() - t0:.0f} s")
    survivors(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
