"""The users of executable kernel memory and the configuration flags: no action is dead,
and every flag of the 5.1-6.0 coverage changes a verdict or a trace (each test says which)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.actions import ACTIONS
from model.bounds import Bounds
from model.logic import CONCRETE
from model.profiles import PROFILES, QUIET_USERS
from model.state import OWN_ROX_CACHE
from model.system import System
from search.engines import bmc
from search.engines.scenarios import run
from search.traces.scenario_file import load, parse

ROOT = Path(__file__).resolve().parent.parent
DEPTH = 3  # the deepest guard of a built-in step needs three calls before it (module unload)


def _enabled_within(profile: str, depth: int) -> set[str]:
    """Names of the actions enabled in some state reachable in at most `depth` steps."""
    system = System.build(profile)
    frontier = {system.initial()}
    seen = set(frontier)
    names: set[str] = set()
    for _ in range(depth + 1):
        nxt = set()
        for s in frontier:
            for inst in system.enabled(s):
                names.add(inst.name)
                t = system.step(s, inst)
                if t not in seen:
                    seen.add(t)
                    nxt.add(t)
        frontier = nxt
    return names


@pytest.fixture(scope="module")
def live_actions() -> dict[str, set[str]]:
    return {p: _enabled_within(p, DEPTH) for p in PROFILES}


def test_no_dead_action(live_actions: dict[str, set[str]]) -> None:
    live = set().union(*live_actions.values())
    assert set(ACTIONS) - live == set()


def test_users_exist_where_the_kernel_had_them(live_actions: dict[str, set[str]]) -> None:
    assert "bpf_trampoline_update" not in live_actions["v5.2"]  # trampolines: 5.5
    assert "bpf_trampoline_update" in live_actions["v5.18-rc1"]
    assert "alloc_insn_page" not in live_actions["v5.13-powerpc"]
    assert "set_ftrace_ops_ro" in live_actions["v6.0"]  # the boot path: 5.7


def _first(profile: str, inv: str, depth: int, **ov: object) -> int | None:
    r = bmc.check(System.build(profile, overrides=dict(ov)), [inv], depth)[inv]
    return r.depth if r.status == "violated" else None


def test_bpf_trampoline_flag_decides_wx() -> None:
    quiet = dict(QUIET_USERS)
    assert _first("v5.19", "wx", 2, **quiet) is None
    assert _first("v5.19", "wx", 2, **{**quiet, "bpf_trampoline": "rwx"}) == 1


def test_kprobes_flag_decides_no_exec_uninit() -> None:
    quiet = dict(QUIET_USERS)
    assert _first("v5.19", "no_exec_uninit", 2, **quiet) is None
    assert _first("v5.19", "no_exec_uninit", 2, **{**quiet, "kprobes_insn": "ro_x"}) == 1


def test_ftrace_flag_decides_wx() -> None:
    quiet = dict(QUIET_USERS)
    assert _first("v5.19", "wx", 2, **{**quiet, "ftrace_tramp": "boot_x_first"}) == 1
    assert _first("v5.19", "wx", 2, **{**quiet, "ftrace_tramp": "x_while_w"}) == 1


def test_set_memory_flag_changes_the_trace() -> None:
    """powerpc 5.13 had no set_memory_*: set_memory_ro leaves the page writable."""
    sc = parse("m = module_alloc(npages=1)\nset_memory_ro(m, numpages=1)\n")
    for has, writable in ((False, True), (True, False)):
        system = System.build("v5.13-powerpc", overrides={"set_memory": has}, scenario=True)
        s = system.initial()
        for inst in _steps(sc, system):
            s = system.step(s, inst)
        assert s.areas.pte_w[0] is writable


def _steps(sc, system):  # type: ignore[no-untyped-def]
    from search.engines.scenarios import resolve_all, run_concrete

    resolved = resolve_all(sc, system)
    s = system.initial()
    out = []
    for r in resolved:
        (inst,) = [i for i in r.candidates(system) if i.guard(s, system.ctx, CONCRETE)]
        s = system.step(s, inst)
        out.append(inst)
    assert run_concrete(sc, resolved, system) is not None
    return out


def test_debug_vm_flag_decides_the_free_time_report() -> None:
    """Without CONFIG_DEBUG_VM free_tail_pages_check does not run: the corrupted tail is
    freed silently (the raw write is still caught when it happens)."""
    sc = load(str(ROOT / "scenarios" / "fbdev_defio_cleanup.calls"))
    bounds = Bounds.parse(sc.bounds or "small")
    on = run(sc, System.build("v5.18-rc1", bounds=bounds, scenario=True))
    off = run(sc, System.build("v5.18-rc1", bounds=bounds, overrides={"debug_vm": False}, scenario=True))
    assert on.reports and not off.reports
    assert on.verdicts["no_tail_as_base"].call == off.verdicts["no_tail_as_base"].call == 5


# ---- the kernels since 6.0 (issue 9) ------------------------------------------------------


def _run(profile: str, calls: str, **overrides: object):  # type: ignore[no-untyped-def]
    system = System.build(profile, overrides=overrides)
    s = system.initial()
    for line in calls.split(";"):
        (inst,) = [i for i in system.instances if str(i) == line.strip()]
        assert inst.guard(s, system.ctx, CONCRETE), (profile, overrides, line)
        s = system.step(s, inst)
    return s


def test_execmem_sets_flush_reset_itself() -> None:
    """execmem_alloc (6.10) passes VM_FLUSH_RESET_PERMS for every user: a loader that forgot
    set_vm_flush_reset_perms (free_resets_perms off) still gets its alias reset."""
    for execmem, flagged in (("none", False), ("vmalloc", True)):
        s = _run("v6.10", "move_module(area=0, npages=1)", execmem=execmem, free_resets_perms=False)
        assert s.areas.flush_reset[0] is flagged


_CACHED_MODULE = ("execmem_cache_populate(area=0, fail=false); module_memory_alloc(area=0, fail=false); "
                  "module_memory_restore_rox(area=0, fail=false)")


def test_cpa_collapse_flag_restores_the_huge_mapping() -> None:
    """6.15: execmem_make_temp_rw splits the cache's huge mapping, and set_memory_rox
    (CPA_COLLAPSE, 41d88484c71c) makes it one PMD again; the direct-map alias stays split."""
    for collapse in (False, True):
        s = _run("v6.15", _CACHED_MODULE, cpa_collapse=collapse)
        assert s.areas.vsplit[0] is not collapse
        assert s.dmap.split[0] is True


def test_rox_cache_free_flag_decides_the_free_path() -> None:
    """6.17 frees through execmem_force_rw, INT3, execmem_restore_rox: a kprobes page taken
    whole from the cache splits the direct-map leaf on its way back (restore_rox collapses
    the vmalloc mapping, not the alias); through text_poke (6.13-rc1 to 6.16) nothing splits."""
    calls = ("execmem_cache_populate(area=0, fail=false); alloc_insn_page(area=0, fail=false); "
             "free_insn_page(area=0, fail=false)")
    for how, split in (("text_poke_fill", False), ("rw_fill_rox", True)):
        s = _run("v6.17", calls, rox_cache_free=how)
        assert s.dmap.split[0] is split and s.areas.vsplit[0] is False
        assert s.areas.owner[0] == OWN_ROX_CACHE and not s.areas.pte_w[0]  # back, ROX


def test_collapse_without_the_flags_test_breaks_direct_map_integrity() -> None:
    """collapse_pmd_page checks that all PTEs agree (41d88484c71c). Without that check (the
    seeded flag collapse_same_flags=false) set_memory_rox on one page of a huge kvmalloc
    area collapses a PMD whose pages differ: direct_map_integrity's huge-mapping rule."""
    from invariants import INVARIANTS

    calls = "k = kvmalloc(npages=2)\nset_memory_rox(k, numpages=1)\n"
    for checked, holds in ((True, True), (False, False)):
        system = System.build("v6.15", overrides={"collapse_same_flags": checked}, scenario=True)
        s = system.initial()
        for inst in _steps(parse(calls), system):
            s = system.step(s, inst)
        assert s.areas.vsplit[0] is checked
        assert INVARIANTS["direct_map_integrity"](s, system.ctx, CONCRETE) is holds
