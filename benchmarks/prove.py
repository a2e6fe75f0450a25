"""Print, per (profile, invariant), what `--prove` achieves: proved or not (and why), the
proof's wall time, the certificate's size, and the time `certify` takes to re-check it
from the saved file (a fresh system, a fresh encoding, a plain z3 solver).

    python benchmarks/prove.py                       # v5.19, v6.0, the newest; default bounds
    python benchmarks/prove.py --profile v6.0 --invariant no_leak --timeout 300
    python benchmarks/prove.py --bounds areas=1,hpage=2,chunks=1,progs=1,refs=0

Only invariants a profile declares to hold are attempted unless --invariant names
others (a violated one must come out "not proved"). The machine is shared: the figures
are wall times of one run, not a best of several.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from invariants import INVARIANTS  # noqa: E402
from model.bounds import DEFAULT_BOUNDS, Bounds  # noqa: E402
from model.profiles import PROFILES  # noqa: E402
from model.system import System  # noqa: E402
from search.engines import certificate, pdr  # noqa: E402
from search.result import PROVED  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", action="append", default=[])
    ap.add_argument("--invariant", action="append", default=[])
    ap.add_argument("--bounds", default="")
    ap.add_argument("--timeout", type=float, default=300.0, help="per invariant (default 300)")
    ap.add_argument("--out", default=None, help="keep the certificates here (default: a "
                    "temporary folder)")
    a = ap.parse_args(argv)
    bounds = Bounds.parse(a.bounds) if a.bounds else DEFAULT_BOUNDS
    # issue 11's goal: every invariant that holds on v5.19, v6.0 and the newest profile
    profiles = a.profile or ["v5.19", "v6.0", list(PROFILES)[-1]]
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="allocheck-certs."))
    print(f"bounds {','.join(f'{k}={v}' for k, v in bounds.as_dict().items())}; "
          f"timeout {a.timeout:g}s per invariant; certificates in {out}")
    # prove s: the wall time of the call, which includes proving first the invariants
    # with a smaller cone it takes as facts; own s: IC3 on this invariant alone
    print(f"{'profile':<10}{'invariant':<22}{'result':<8}{'prove s':>9}{'own s':>8}"
          f"{'lemmas':>8}{'cert KB':>9}{'check s':>9}  detail")
    failed = 0
    for prof in profiles:
        system = System.build(prof, bounds=bounds)
        t = time.monotonic()
        pdr.steps_of(system)
        print(f"{prof:<10}{'(encoding)':<22}{'':<8}{time.monotonic() - t:>9.1f}")
        names = a.invariant or [n for n in INVARIANTS if system.expected(n) == "holds"]
        for inv in names:
            t = time.monotonic()
            proof = pdr.prove(system, inv, a.timeout)
            took = time.monotonic() - t
            r = proof.result
            if r.status == PROVED and proof.certificate is not None:
                path = certificate.save(proof.certificate, out)
                t = time.monotonic()
                verdict = certificate.check(certificate.load(path))
                check = time.monotonic() - t
                ok = "proved" if verdict.valid else "INVALID"
                failed += not verdict.valid
                size = f"{path.stat().st_size / 1024:.1f}"
                print(f"{prof:<10}{inv:<22}{ok:<8}{took:>9.1f}"
                      f"{proof.certificate.seconds:>8.1f}{proof.certificate.lemmas:>8}"
                      f"{size:>9}{check:>9.1f}  {r.detail}", flush=True)
            else:
                print(f"{prof:<10}{inv:<22}{'no':<8}{took:>9.1f}{'-':>8}{'-':>8}{'-':>9}"
                      f"{'-':>9}  {r.detail[:160]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
