"""Fast sweeps in the fast suite: every seeded bug, and every profile's history with
page-table allocation failures on, found by BMC at exactly its shortest depth; and not
found at that depth without the flipped flag (or without the faults), so that the flag
or the fault is what makes the bug.

The depths are the shortest traces (BMC goes depth by depth and reports the first),
measured on the default scope; a model change that makes a bug shallower or deeper, or
loses it, fails here. A new seeded bug or fault declaration without a depth fails
`test_every_sweep_has_a_depth`.
"""

from __future__ import annotations

import pytest

from model.profiles import PROFILES, SEEDED_BUGS, SeededBug
from model.system import System
from search.engines import bmc
from search.result import HOLDS, VIOLATED

# the shortest violation of each seeded bug, in kernel calls
SEEDED_DEPTH: dict[str, int] = {
    "exec-module-alloc": 1,
    "x-before-ro": 2,
    "no-alias": 1,
    "huge-compound-again": 3,
    "unfilled-pack": 1,
    "no-invalidate": 4,
    "alias-nx": 1,
    "no-reset-on-free": 4,
    "defio-no-get-page": 4,
    "lookup-by-mask": 2,
    "trampoline-rwx": 1,
    "kprobes-unwritten": 1,
    "ftrace-boot-x-first": 1,
    "reset-without-flush": 2,
    "oversized-no-flush-reset": 2,
    "struct-ops-no-flush-reset": 3,
    "vfree-first-page-only": 2,
    "rox-cache-out-of-direct-map": 2,
    "rox-rw-copy": 4,
}

# the shortest violation of each invariant a profile violates only with faults on
FAULT_DEPTH: dict[tuple[str, str], int] = {
    ("v5.18-rc1", "direct_map_integrity"): 2,
    ("v6.2", "wx"): 1,
    ("v6.8", "wx"): 1,
    ("v6.10", "wx"): 1,
}

# With the users that break wx in every x86 version quieted, the 2022 story's own paths
# still break it when a direct-map split fails (set_memory_ro's error ignored, then X):
# the mechanism the profiles' wx-with-faults history declared before those users existed.
SPLIT_WX_DEPTH: dict[str, int] = {"v5.2": 3, "v5.18-rc1": 3, "v5.18": 1, "v5.18.y": 1, "v5.19": 1,
                                  "v6.0": 1}


@pytest.mark.parametrize("profile", sorted(SPLIT_WX_DEPTH))
def test_split_failure_breaks_wx_without_the_users(profile: str) -> None:
    from model.profiles import QUIET_USERS

    d = SPLIT_WX_DEPTH[profile]
    on = bmc.check(System.build(profile, faults=True, overrides=QUIET_USERS), ["wx"], d)["wx"]
    assert on.status == VIOLATED and on.depth == d, on
    off = bmc.check(System.build(profile, overrides=QUIET_USERS), ["wx"], d)["wx"]
    assert off.status == HOLDS, off

FAULT_PROFILES = [name for name, p in PROFILES.items() if p.violated_with_faults]


def test_every_sweep_has_a_depth() -> None:
    assert set(SEEDED_DEPTH) == {b.name for b in SEEDED_BUGS}
    assert set(FAULT_DEPTH) == {(n, i) for n, p in PROFILES.items() for i in p.violated_with_faults}
    assert FAULT_PROFILES, "no profile declares a fault history: the fault sweep checks nothing"


@pytest.mark.parametrize("bug", SEEDED_BUGS, ids=[b.name for b in SEEDED_BUGS])
def test_seeded_bug_is_found_at_its_depth(bug: SeededBug) -> None:
    depth = SEEDED_DEPTH.get(bug.name)
    assert depth is not None, f"{bug.name}: add its shortest depth to SEEDED_DEPTH"
    flipped = bmc.check(System.build(bug.base, overrides=bug.all_overrides), [bug.catches], depth)
    r = flipped[bug.catches]
    assert r.status == VIOLATED, f"{bug.name}: {bug.catches} {r.status} to depth {depth}: {bug.story}"
    assert r.depth == depth, f"{bug.name}: shortest trace {r.depth} calls, declared {depth}: {r.steps}"
    assert len(r.steps) == depth
    safe = bmc.check(System.build(bug.base, overrides=bug.base_overrides), [bug.catches], depth)[bug.catches]
    assert safe.status == HOLDS, f"{bug.base} itself violates {bug.catches}: {safe.steps}"


@pytest.mark.parametrize("profile", FAULT_PROFILES)
def test_fault_history_is_found_at_its_depth(profile: str) -> None:
    declared = sorted(PROFILES[profile].violated_with_faults)
    depths = {inv: FAULT_DEPTH.get((profile, inv)) for inv in declared}
    missing = [inv for inv, d in depths.items() if d is None]
    assert not missing, f"{profile}: add the shortest depth of {missing} to FAULT_DEPTH"
    deepest = max(d for d in depths.values() if d is not None)
    with_faults = bmc.check(System.build(profile, faults=True), declared, deepest)
    for inv, d in depths.items():
        r = with_faults[inv]
        assert r.status == VIOLATED, f"{profile} --faults: {inv} {r.status} to depth {deepest}"
        assert r.depth == d, f"{profile} --faults: {inv} shortest {r.depth} calls, declared {d}"
        assert any(dict(i.items).get("fail") is True for i in r.steps), \
            f"{profile}: {inv} with faults on, but no call in the trace fails: {r.steps}"
    without = bmc.check(System.build(profile), declared, deepest)
    for inv in declared:
        assert without[inv].status == HOLDS, \
            f"{profile}: {inv} is declared for faults only but breaks without: {without[inv].steps}"
