"""Cone of influence (search/engines/bmc.py, `Encoding.cone`): BMC on each invariant's
cone gives the verdict and the shortest depth of BMC on the whole relation, under every
profile and for every invariant, and a seeded bug is still found at its depth."""

from __future__ import annotations

import pytest

from invariants import INVARIANTS
from model.profiles import PROFILES, SEEDED_BUGS
from model.state import leaves
from model.system import System
from search.engines import bmc

DEPTH = 3
# one profile per kind of action set (cones are computed from the actions a profile has):
# module_alloc users only, PMD-mapped packs, the fixed packs, 6.x trampolines and
# set_memory_rox, the ROX cache with its writable copy, and with temp RW and collapse
CONE_PROFILES = ("v5.1", "v5.18-rc1", "v5.18.y", "v6.1", "v6.13-rc1", "v6.17")


def test_the_cone_profiles_exist() -> None:
    assert set(CONE_PROFILES) <= set(PROFILES)


@pytest.mark.parametrize("profile", CONE_PROFILES)
def test_reduced_and_whole_bmc_agree(profile: str) -> None:
    system = System.build(profile)
    whole = bmc.check(system, list(INVARIANTS), DEPTH, cones=False)
    reduced = bmc.check(system, list(INVARIANTS), DEPTH, cones=True)
    for name in INVARIANTS:
        w, r = whole[name], reduced[name]
        assert (r.status, r.depth) == (w.status, w.depth), (profile, name, w, r)
        assert len(r.steps) == len(w.steps)


@pytest.mark.parametrize("bug", [b for b in SEEDED_BUGS if b.name in
                                 ("no-reset-on-free", "defio-no-get-page", "reset-without-flush",
                                  "huge-compound-again")], ids=lambda b: b.name)
def test_a_seeded_bug_is_found_in_its_cone(bug: object) -> None:
    system = System.build(bug.base, overrides=bug.all_overrides)  # type: ignore[attr-defined]
    name = bug.catches  # type: ignore[attr-defined]
    whole = bmc.check(system, [name], 4, cones=False)[name]
    reduced = bmc.check(system, [name], 4, cones=True)[name]
    assert whole.status == reduced.status == "violated"
    assert reduced.depth == whole.depth


def test_the_cone_is_closed_and_smaller_than_the_state() -> None:
    """What `Encoding.cone` promises, checked on its own output: the invariant's reads are
    in it, every instance writing it is kept, and a kept instance's guard and the values
    it writes into the cone read only the cone. And it really leaves something out."""
    enc = bmc.Encoding.build(System.build("v5.19"))
    n = len(leaves(enc.cur))
    reads = enc._analysis()
    for name in INVARIANTS:
        cone, keep = enc.cone([name])
        assert enc.invariant_reads(name) <= cone
        for i, act in enumerate(enc.actions):
            if act is None:
                continue
            written = cone & frozenset(act[1])
            assert (i in keep) == bool(written), (name, i)
            if i in keep:
                assert reads.guard[i] <= cone
                for j in written:
                    assert reads.value[i][j] <= cone
    assert min(len(enc.cone([name])[0]) for name in INVARIANTS) < n


def test_leaf_reads_finds_exactly_the_constants() -> None:
    import z3

    from search.engines.symbolic import leaf_reads

    a, b, c = z3.BitVecs("a b c", 8)
    x = z3.Bool("x")
    shared = a + b
    terms = [z3.If(x, shared, c) == 3, shared > 1, z3.BoolVal(True), True]
    got = leaf_reads(terms, [a, b, c, x])
    assert got == [frozenset({0, 1, 2, 3}), frozenset({0, 1}), frozenset(), frozenset()]
