"""Every configuration flag changes what the model does: some verdict, or some step.

A flag that changes nothing is a claim about the kernel the model cannot check. Flags a
seeded bug flips are covered by tests/test_sweeps.py (the flip breaks an invariant the base
profile holds); the others are here, each with the smallest witness found for it.
"""

from __future__ import annotations

import pytest

import tests.test_users as test_users
from model.actions import ACTIONS, Instance
from model.logic import CONCRETE
from model.profiles import FLAG_INFO, PROFILES, SEEDED_BUGS, parse_flag_value
from model.state import initial_state
from model.system import System
from search.engines import bmc
from tests.helpers import reach

# flag -> (profile, flipped value, invariant, depth, status under the profile, status flipped)
VERDICT: dict[str, tuple[str, object, str, int, str, str]] = {
    # 5.2 without VM_FLUSH_RESET_PERMS: the owner resets by hand and vfree flushes lazily
    "flush_reset_perms": ("v5.2", False, "no_stale_exec", 4, "holds", "violated"),
    # per-program JIT images instead of packs: no chunk outlives its program in 5.18
    "bpf_prog_pack": ("v5.18", False, "no_stale_exec", 4, "violated", "holds"),
    # a 2 MiB pack on 4 KiB pages may land unaligned, and 5.18 finds it by masking
    "pack_size": ("v5.18", "hpage", "pack_bookkeeping", 4, "holds", "violated"),
    # 6.17 takes kprobes pages from the INT3-filled ROX cache: no unwritten slot is executable
    "rox_cache_users": ("v6.17", "module", "no_exec_uninit", 2, "holds", "violated"),
}

# flag -> (profile, flipped value, action, params): that step from boot differs
STEP: dict[str, tuple[str, object, str, dict[str, object]]] = {
    "module_alloc_no_huge": ("v5.13-powerpc", False, "move_module", {"area": 0, "npages": 2}),
    "kvmalloc_huge": ("v5.19", False, "kvmalloc", {"area": 0, "npages": 2}),
    "hash_huge": ("v5.19", False, "alloc_large_system_hash", {"area": 0}),
    # a failed alias split: 6.10 frees the new pack, 6.2 keeps it half protected
    "set_memory_errors": ("v6.10", "ignored", "alloc_new_pack",
                          {"prog": 0, "area": 0, "aligned": True, "fail": True}),
    # ro then x leaves the pages after a failed split RW+X; rox leaves them RW+NX
    "set_memory_rox": ("v6.2", False, "alloc_new_pack",
                       {"prog": 0, "area": 0, "aligned": True, "fail": True}),
}

# flag -> the test that shows what it changes
ELSEWHERE: dict[str, str] = {
    "debug_vm": "test_debug_vm_flag_decides_the_free_time_report",
    "set_memory": "test_set_memory_flag_changes_the_trace",
    "execmem": "test_execmem_sets_flush_reset_itself",
    "cpa_collapse": "test_cpa_collapse_flag_restores_the_huge_mapping",
    "collapse_same_flags": "test_collapse_without_the_flags_test_breaks_direct_map_integrity",
    "rox_cache_free": "test_rox_cache_free_flag_decides_the_free_path",
}


def test_a_flag_is_one_of_the_objects_flag_info_lists() -> None:
    """Under a profile or a `--set` override alike, so that comparing a flag by identity
    (`is`) and by value (`==`) agree everywhere (mutation testing: `!=` -> `is not` on a
    string flag changed nothing only because every value was a literal)."""
    for prof in PROFILES.values():
        for name, info in FLAG_INFO.items():
            assert any(getattr(prof.flags, name) is v for v in info.values), (prof.name, name)
    text = "".join(["rox_", "cache"])  # a new string object, as a command line's
    flags = PROFILES["v6.0"].flags.with_overrides({"execmem": parse_flag_value("execmem", text)})
    assert flags.execmem is FLAG_INFO["execmem"].values[FLAG_INFO["execmem"].values.index(text)]


def test_every_flag_value_can_be_set_and_no_other() -> None:
    """Each flag's values are distinct and of one type, and `--set` accepts each of them
    under any profile (mutation testing: a flag's values turned into (True, True), which
    refuses the seeded bug's False, went unnoticed: its witness is not a fast check)."""
    for name, info in FLAG_INFO.items():
        assert len(set(info.values)) == len(info.values) >= 2, name
        assert len({type(v) for v in info.values}) == 1, name
        for v in info.values:
            assert getattr(PROFILES["v5.2"].flags.with_overrides({name: v}), name) == v


def test_a_profiles_declarations_under_faults_and_nodes_only_add() -> None:
    """violated_with_faults and violated_with_nodes list what faults or a second node add:
    none repeats `violated` or the other, so `expected` may take their union (a mutant of
    the validation sample, `|` -> `^`, is equivalent only because of this)."""
    for name, prof in PROFILES.items():
        assert not prof.violated & prof.violated_with_faults, name
        assert not prof.violated & prof.violated_with_nodes, name
        assert not prof.violated_with_faults & prof.violated_with_nodes, name


def test_every_flag_has_a_witness() -> None:
    seeded = {f for b in SEEDED_BUGS for f in b.overrides}
    covered = seeded | set(VERDICT) | set(STEP) | set(ELSEWHERE)
    assert set(FLAG_INFO) <= covered, f"flags that change nothing shown: {set(FLAG_INFO) - covered}"
    for name in ELSEWHERE.values():
        assert callable(getattr(test_users, name, None)), name


@pytest.mark.parametrize("flag", sorted(VERDICT))
def test_flag_changes_a_verdict(flag: str) -> None:
    profile, value, inv, depth, base, flipped = VERDICT[flag]
    assert getattr(PROFILES[profile].flags, flag) != value
    got = {}
    for label, over in (("base", {}), ("flipped", {flag: value})):
        got[label] = bmc.check(System.build(profile, overrides=over), [inv], depth)[inv].status
    assert (got["base"], got["flipped"]) == (base, flipped), got


@pytest.mark.parametrize("flag", sorted(STEP))
def test_flag_changes_a_step(flag: str) -> None:
    profile, value, action, params = STEP[flag]
    assert getattr(PROFILES[profile].flags, flag) != value
    after = []
    for over in ({}, {flag: value}):
        system = System.build(profile, overrides=over)
        inst = Instance(ACTIONS[action], tuple(params.items()))
        s0 = initial_state(system.bounds)
        assert inst.action.guard(s0, dict(inst.params), system.ctx, CONCRETE)
        after.append(inst.action.effect(s0, dict(inst.params), system.ctx, CONCRETE))
    assert after[0] != after[1]


def test_without_debug_vm_the_head_reference_leaks_silently() -> None:
    """5.18-rc1: with CONFIG_DEBUG_VM the put that lands on the detached tail is a
    VM_BUG_ON_PAGE (reported, so no_leak counts the page as the kernel's); without it the
    head's reference leaks and nothing says so."""
    r = bmc.check(System.build("v5.18-rc1", overrides={"debug_vm": False}), ["no_leak"], 6)
    assert r["no_leak"].status == "violated"
    assert [i.action.name for i in r["no_leak"].steps][-1] in ("zap_page_range", "vfree")


@pytest.mark.parametrize("backing", ["split", "compound"])
def test_the_rox_cache_cleaner_frees_its_huge_page_as_it_was_backed(backing: str) -> None:
    """execmem_cache_clean vfree's a huge mapping: one __free_pages of the compound page, or
    each split page; either way every frame of the zone goes back free and unreported
    (mutation testing: the cleaner's `huge` inverted changed nothing under the profiles'
    split backing, and went unnoticed with compound backing set)."""
    system = System.build("v6.13-rc1", overrides={"huge_backing": backing})
    s = reach(system, ["execmem_cache_populate(area=0, fail=false)",
                       "execmem_cache_clean(area=0, fail=false)"])
    zone = system.bounds.zone(0)
    assert [s.pages.kind[f] for f in zone] == [0] * len(zone)  # PG_FREE
    assert [s.pages.refcount[f] for f in zone] == [0] * len(zone)
    assert [s.pages.bad[f] for f in zone] == [0] * len(zone)  # BAD_NONE
