"""Concrete steps per second (random enabled actions, default bounds), and how long
`pytest invariants/` takes. Prints figures; asserts nothing.

Each figure is steps per second of this process's CPU time, from a cold start (a new
walker, nothing remembered) over `--seconds` of CPU: the machine is shared, and CPU time
is what a busy neighbour disturbs least. The wall-clock rate is printed beside it.

    python benchmarks/step_rate.py [--seconds 5] [--no-pytest]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from invariants import INVARIANTS  # noqa: E402
from model.logic import CONCRETE  # noqa: E402
from model.profiles import PROFILES  # noqa: E402
from model.system import System  # noqa: E402
from search.engines.simulate import Walker  # noqa: E402


def rate(profile: str, seconds: float, check: bool, walk: int = 30) -> tuple[float, float]:
    """(steps per CPU second, steps per wall-clock second)."""
    system = System.build(profile)
    walker = Walker(system, seed=1)
    steps = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while time.process_time() - c0 < seconds:
        for _, s in walker.walk(walk):
            steps += 1
            if check:
                for inv in INVARIANTS.values():
                    inv(s, system.ctx, CONCRETE)
    return steps / (time.process_time() - c0), steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="per profile and mode")
    ap.add_argument("--no-pytest", action="store_true", help="skip timing pytest invariants/")
    a = ap.parse_args()
    print(f"{'profile':<15}{'steps/s (CPU)':>14}{'(wall)':>9}"
          f"{'+ all invariants (CPU)':>25}{'(wall)':>9}")
    plains: list[float] = []
    for name in PROFILES:
        plain, plain_wall = rate(name, a.seconds, check=False)
        checked, checked_wall = rate(name, a.seconds, check=True)
        plains.append(plain)
        print(f"{name:<15}{plain:>14.0f}{plain_wall:>9.0f}{checked:>25.0f}{checked_wall:>9.0f}",
              flush=True)
    print(f"median over profiles: {statistics.median(plains):.0f} steps per CPU second "
          "(goal: 10,000)")
    if not a.no_pytest:
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "invariants"], cwd=ROOT,
                           capture_output=True, text=True)
        tail = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr[-200:]
        print(f"pytest invariants/: {time.perf_counter() - t0:.1f} s, exit {p.returncode}: {tail}")


if __name__ == "__main__":
    main()
