"""Mutation score of `model/` and `invariants/` against the fast checks (issue 13): every
small plausible mistake cosmic-ray can make in a module (a flipped comparison, a dropped
operand, a changed constant), and whether the fast checks catch it. Prints the score and
every survivor (file, line, operator, the mutated line); never asserts.

    pip install -e '.[mutation]'
    python benchmarks/mutation.py                          # every module in pyproject.toml
    python benchmarks/mutation.py invariants/no_leak.py    # some modules only

Configured in pyproject.toml, [tool.allocheck.mutation]: the module globs, the test command
(the fast checks) and a per-mutant timeout. cosmic-ray mutates files in place, so it runs
in a scratch git worktree of HEAD (its own copy; the working tree is never touched), with
PYTHONPATH pointing there. Slow: each mutant runs the test command (about 5 to 60 s), so a
module of 100 mutants takes most of an hour on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
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


def run_module(module: str, cfg: dict, tree: Path, work: Path) -> list[dict]:
    """cosmic-ray init, exec and dump for one module; the dump's records."""
    conf = work / (module.replace("/", "_") + ".toml")
    session = conf.with_suffix(".sqlite")
    conf.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        f"timeout = {float(cfg['timeout'])}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(cfg['test-command'])}\n"
        "[cosmic-ray.distributor]\nname = \"local\"\n")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for step in (["init", str(conf), str(session)], ["exec", str(conf), str(session)]):
        subprocess.run(["cosmic-ray", *step], cwd=tree, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    dump = subprocess.run(["cosmic-ray", "dump", str(session)], cwd=tree, env=env, check=True,
                          capture_output=True, text=True).stdout
    return [json.loads(line) for line in dump.splitlines() if line.strip()]


def outcome(record: list) -> str:
    _item, result = record
    if result is None:
        return "pending"
    if result.get("worker_outcome") != "normal":
        return result.get("worker_outcome", "?")
    return result.get("test_outcome", "?")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("module", nargs="*", help="paths relative to the repository (default: all)")
    args = ap.parse_args()
    cfg = settings()
    chosen = modules(cfg, args.module)
    counts = {"killed": 0, "survived": 0, "incompetent": 0, "other": 0}
    survivors: list[str] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tree, work = Path(tmp) / "tree", Path(tmp) / "work"
        work.mkdir()
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), "HEAD"], cwd=ROOT,
                       check=True, capture_output=True)
        try:
            for module in chosen:
                records = run_module(module, cfg, tree, work)
                mine = {"killed": 0, "survived": 0}
                for rec in records:
                    kind = outcome(rec)
                    key = kind if kind in counts else "other"
                    counts[key] += 1
                    if kind in mine:
                        mine[kind] += 1
                    if kind == "survived":
                        item = rec[0]
                        for m in item.get("mutations", []):
                            survivors.append(f"{m['module_path']}:{m['start_pos'][0]} "
                                             f"{m['operator_name']} #{m['occurrence']}")
                print(f"{module}: {len(records)} mutants, {mine['killed']} killed, "
                      f"{mine['survived']} survived", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           capture_output=True)
    judged = counts["killed"] + counts["survived"]
    score = 100.0 * counts["killed"] / judged if judged else 0.0
    print(f"\nmutation score: {score:.1f}% ({counts['killed']} killed of {judged} that ran the "
          f"tests; {counts['incompetent']} incompetent, {counts['other']} other) in "
          f"{time.monotonic() - t0:.0f} s")
    for s in survivors:
        print(f"  survived: {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
