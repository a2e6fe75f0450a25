"""Golden traces: runs that together use every action of the model under every profile where
it exists, replayed with full state comparison (issue 13, part 2).

`tests/golden/*.calls` are the golden scenarios; `tests/golden/make.py` turns each, under
each profile it names, into `tests/golden/traces/<scenario>__<profile>.itf.json` with every
state recorded. Here:

- every trace loads (search.traces.itf.load recomputes every state from the steps and compares it
  with the recorded one) and replays (search.traces.replay.replay: reproduced, every invariant
  checked after every step; a golden run violates none);
- the traces are those make.py generates from the scenarios today (none missing or stale);
- META: every (action, profile) pair, for every action of REGISTRY (the built-in ones and
  the scenario calls) and every profile under which System.build(profile, scenario=True)
  has an instance of it, is used by a golden run (no invariant violated at any step) under
  that profile. `KNOWN` lists, with the kernel's reason, the pairs that no run under the
  profile's own flags can use without violating an invariant: each is used by a golden
  run under the profile with the overrides its scenario names, and under the profile's own
  flags by a trace that records the expected violation, or by a scenario that shows the
  call cannot happen at all. A few pairs have no golden run under their profile, even with
  overrides (`NO_GOLDEN_RUN`): each is covered under other profiles, except the ROX cache's
  cleaner, whose every run breaks wx (the model's finding, which the README reports).

Regenerate after a deliberate model change: `python tests/golden/make.py`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from model.actions.base import REGISTRY, Action
from model.profiles import PROFILES
from model.system import System
from search.engines.scenarios import resolve_all
from search.traces.itf import action_named, load
from search.traces.replay import replay
from search.traces.scenario_file import load as load_scenario

GOLDEN = Path(__file__).resolve().parent / "golden"


def _import_make():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("golden_make", GOLDEN / "make.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


make = _import_make()
TRACE_FILES = sorted(make.TRACES.glob("*.itf.json"))

Pair = tuple[str, str]  # (action signature, profile)


def sig(a: Action) -> str:
    """An action by name and parameter names: names are overloaded (the built-in
    `put_page(ref)` and the scenario call `put_page(page)`)."""
    return f"{a.name}({', '.join(a.params)})"


@dataclass(frozen=True)
class Known:
    """Pairs no run under the profile's own flags can use without violating an invariant.

    `golden`: the golden scenario that uses them under each profile with overrides (its
    `set:` line), or None when none does (then `NO_GOLDEN_RUN` says where they are covered).
    `own`: the golden scenario under the profile's own flags: a trace recording the expected
    violation (`kind == "violates"`), or a run where the call is impossible (`"never"`)."""

    actions: tuple[str, ...]
    profiles: tuple[str, ...]
    kind: str  # "violates" or "never"
    why: str
    golden: str | None
    own: str


_X86_PACKS = ("v5.18-rc1", "v5.18", "v5.18.y", "v5.19", "v6.0")
# kprobes pages from module_alloc / execmem_alloc, not yet from the ROX cache (6.17)
_X86_6X = ("v6.1", "v6.2", "v6.8", "v6.10", "v6.13-rc1", "v6.15")
_ROX_CACHE = ("v6.13-rc1", "v6.15", "v6.17")
_RWX = ("v5.1", "v5.13-powerpc")

KNOWN: tuple[Known, ...] = (
    Known(("move_module(area, npages)", "set_memory_ro(area, npages, fail)",
           "module_memfree(area, npages, fail)"), _RWX, "violates",
          "module_alloc maps PAGE_KERNEL_EXEC (5.1.0 to 5.1.5; powerpc 5.13, which has no "
          "set_memory_* either): a module is RW+X from move_module on (wx)",
          "module_loader__rw", "module_loader_rwx"),
    Known(("set_memory_x(area, npages, fail)",), _RWX, "never",
          "the image is executable from module_alloc on: the loader's lock is set_memory_ro "
          "alone, so the built-in set_memory_x step is never enabled",
          "module_loader__rw", "module_loader_x_rwx"),
    Known(("bpf_jit_binary_alloc(prog, area)", "bpf_int_jit_compile(prog)",
           "bpf_jit_binary_free(prog, fail)"), _RWX, "violates",
          "a JIT image from module_alloc is RW+X (PAGE_KERNEL_EXEC) from its allocation on (wx)",
          "bpf_jit__rw", "bpf_jit_rwx"),
    Known(("module_alloc(area, npages)",), _RWX, "violates",
          "module_alloc maps PAGE_KERNEL_EXEC: RW+X (wx) and executable before anything is "
          "written (no_exec_uninit)",
          "module_alloc_calls__rw", "module_alloc_rwx"),
    Known(("set_vm_flush_reset_perms(addr)",), ("v5.1",), "never",
          "set_vm_flush_reset_perms does not exist before 5.2 (868b104d7379): the call's "
          "first check is the flush_reset_perms flag",
          "flush_reset_perms__v51", "flush_reset_perms"),
    Known(("alloc_insn_page(area, fail)", "arch_copy_kprobe(area)", "free_insn_page(area, fail)"),
          ("v5.1",), "violates",
          "alloc_insn_page: RW+X from module_alloc, then set_memory_ro, before any slot is "
          "written (no_exec_uninit); a slot is part of the page, the rest stays unwritten",
          "kprobes__rw", "kprobes_insn"),
    Known(("alloc_insn_page(area, fail)", "arch_copy_kprobe(area)", "free_insn_page(area, fail)"),
          ("v5.2", *_X86_PACKS, *_X86_6X), "violates",
          "alloc_insn_page: set_memory_ro then set_memory_x before any slot is written "
          "(no_exec_uninit, 5.2 to 6.0: \"TODO: ... ensure that ... it is still zeroed\")",
          "kprobes__nocpa", "kprobes_insn"),
    Known(("create_trampoline(area, boot, fail)", "arch_ftrace_trampoline_free(area, fail)"),
          ("v5.1",), "violates",
          "create_trampoline: RW+X from module_alloc (PAGE_KERNEL_EXEC), its unwritten rest "
          "executable (wx, no_exec_uninit)",
          "ftrace_trampoline__rw", "ftrace_trampoline_v51"),
    Known(("create_trampoline(area, boot, fail)", "set_ftrace_ops_ro(area, fail)",
           "arch_ftrace_trampoline_free(area, fail)"), ("v5.2",), "violates",
          "create_trampoline (5.2 to 5.5): set_memory_x while writable (wx; \"anyhow ftrace "
          "breaks W^X completely\"), the unwritten rest executable (no_exec_uninit)",
          "ftrace_trampoline__nocpa", "ftrace_trampoline_v52"),
    Known(("set_ftrace_ops_ro(area, fail)",), (*_X86_PACKS, "v6.1"), "violates",
          "set_ftrace_ops_ro finishes a trampoline created while SYSTEM_BOOTING, which is "
          "executable while writable until then (wx, 59566b0b622e); one created after boot "
          "(ftrace_trampoline.calls) is never half-locked",
          "ftrace_trampoline_boot__nocpa", "ftrace_trampoline_boot"),
    Known(("bpf_trampoline_update(area, fail)", "bpf_tramp_image_put(area, fail)",
           "bpf_dispatcher_update(area, fail)"), _X86_PACKS, "violates",
          "bpf_jit_alloc_exec_page: set_memory_x on a writable page (\"Keep image as "
          "writeable\", wx until 5b0d1c7bd572, 6.1), written in part (no_exec_uninit)",
          "bpf_trampoline__nocpa", "bpf_trampoline"),
    Known(("alloc_new_pack(prog, area, aligned, fail)", "bpf_prog_pack_alloc(prog, area, chunk)",
           "bpf_arch_text_copy(prog)", "bpf_prog_pack_free(prog, fail)"), ("v5.18-rc1", "v5.18"),
          "violates",
          "a new pack is RO+X before anything is written in it (no_exec_uninit until "
          "d88bb5eed04c, 5.19 and 5.18.y); every other pack step needs a pack",
          "bpf_prog_pack__filled", "bpf_prog_pack_unfilled"),
    Known(("bpf_jit_binary_pack_alloc(prog, area, fail)",), ("v5.18",), "violates",
          "a program larger than the pack gets an image that is RO+X before anything is "
          "written in it (no_exec_uninit until d88bb5eed04c, 5.19 and 5.18.y)",
          "bpf_prog_pack_oversized__filled", "bpf_prog_pack_oversized_unfilled"),
)

_NEW_KNOWN: tuple[Known, ...] = (
    Known(("bpf_trampoline_update(area, fail)", "bpf_tramp_image_put(area, fail)"), ("v6.1", "v6.2"),
          "violates",
          "bpf_tramp_image_alloc (6.1 to 6.7): a bpf_jit_alloc_exec'ed page written in part, then "
          "RO+X: its unwritten rest is executable (no_exec_uninit); no flag of these kernels "
          "fills it",
          None, "bpf_trampoline_rox"),
    Known(("klp_apply_section_relocs(area)",), ("v6.13-rc1",), "violates",
          "module_writable_address computes from the rw_copy post_relocation freed "
          "(no_stale_alias, fixed by 4bcf29741145)",
          "execmem_rox_rw_copy__formed", "execmem_rox_livepatch"),
    Known(("execmem_cache_clean(area, fail)",), _ROX_CACHE, "violates",
          "the cleaner vfree's ROX memory without VM_FLUSH_RESET_PERMS: an executable TLB entry "
          "may outlive the free of a page now writable through the direct map (wx)",
          None, "execmem_cache_clean"),
)
KNOWN = KNOWN + _NEW_KNOWN

# The pairs with no golden run under their own profile even with overrides, and where the
# action is covered instead: (action, profile) -> the golden scenarios that use it elsewhere.
NO_GOLDEN_RUN: dict[Pair, tuple[str, ...]] = {
    # no flag of 6.1 or 6.2 writes a whole trampoline page: covered by the 5.x scenarios
    **{(a, p): ("bpf_trampoline__nocpa",)
       for a in ("bpf_trampoline_update(area, fail)", "bpf_tramp_image_put(area, fail)")
       for p in ("v6.1", "v6.2")},
    # every cleaner run leaves the stale TLB entry (the model's finding, README): no run is clean
    **{("execmem_cache_clean(area, fail)", p): () for p in _ROX_CACHE},
}


# ---- what exists, what the traces use ---------------------------------------------------


def existing_pairs() -> set[Pair]:
    """(action, profile) for every action with an instance under the profile's own flags
    (at the default bounds)."""
    out = set()
    for p in PROFILES:
        for inst in System.build(p, scenario=True).instances:
            out.add((sig(inst.action), p))
    return out


@dataclass(frozen=True)
class Recorded:
    """What a golden trace file says it ran, read from its JSON alone: the meta-tests count
    uses even when a trace no longer replays (test_golden_trace_replays reports that)."""

    stem: str  # the scenario the trace came from
    profile: str
    overrides: dict[str, Any]
    invariant: str | None
    steps: tuple[tuple[str, dict[str, Any]], ...]


@cache
def recorded() -> tuple[Recorded, ...]:
    out = []
    for f in TRACE_FILES:
        doc = json.loads(f.read_text(encoding="utf-8"))
        m = doc["#meta"]
        steps = tuple((st["#meta"]["action"], st["#meta"]["params"]) for st in doc["states"][1:])
        out.append(Recorded(stem_of(f), m["profile"], m["overrides"], m["invariant"], steps))
    return tuple(out)


@dataclass(frozen=True)
class Use:
    pair: Pair
    stem: str
    clean: bool  # no invariant recorded (make.py checked every invariant after every step)
    overrides: bool


def uses(traces: Iterable[Recorded]) -> set[Use]:
    out = set()
    for t in traces:
        for name, params in t.steps:
            a = action_named(name, params)
            out.add(Use((sig(a), t.profile), t.stem, t.invariant is None, bool(t.overrides)))
    return out


def stem_of(path: Path) -> str:
    return path.name.removesuffix(".itf.json").rsplit("__", 1)[0]


def known_pairs() -> dict[Pair, Known]:
    out: dict[Pair, Known] = {}
    for k in KNOWN:
        for a in k.actions:
            for p in k.profiles:
                assert (a, p) not in out, f"{a} under {p} is listed twice in KNOWN"
                out[(a, p)] = k
    return out


def coverage_gaps(used: set[Use], exist: set[Pair]) -> list[str]:
    """What the meta-tests report: an existing pair without the coverage it needs."""
    known = known_pairs()
    gaps = []
    for pair in sorted(exist):
        a, p = pair
        golden = {u.stem for u in used if u.pair == pair and u.clean}
        own = {u.stem for u in used if u.pair == pair and u.clean and not u.overrides}
        if not golden and pair not in NO_GOLDEN_RUN:
            gaps.append(f"{a} is used by no golden run under {p}")
        if not own and pair not in known:
            gaps.append(f"{a} is used by no golden run under {p}'s own flags, and KNOWN "
                        "does not say why none can be")
    return gaps


# ---- (a) every golden trace replays with full state comparison ---------------------------


def test_there_are_golden_traces() -> None:
    assert len(TRACE_FILES) >= 100
    assert make.scenario_files()


@pytest.mark.parametrize("path", TRACE_FILES, ids=lambda p: p.name.removesuffix(".itf.json"))
def test_golden_trace_replays(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert len(doc["states"]) >= 2
    # every state recorded in full: load compares each with what the model computes
    assert all(set(doc["vars"]) <= set(st) for st in doc["states"])
    t = load(path)
    rep = replay(t)
    assert rep.reproduced, rep.reason
    assert rep.recorded_config
    if t.invariant is None:
        assert rep.violations == (), f"a golden run violates {rep.violations}"
    else:
        # an expected violation: the recorded invariant is among the first ones broken and
        # still broken at the end (replay checks that); it runs under the profile's own flags
        first = min(k for _, k in rep.violations)
        assert (t.invariant, first) in rep.violations, rep.violations
        assert t.overrides == {}
        assert stem_of(path) in {k.own for k in KNOWN}


def test_golden_traces_are_current() -> None:
    """The traces are what make.py generates from the scenarios now: none missing, stale or
    different (make.py also checks each scenario's `expect:` lines)."""
    diff = make.differences(make.expected_files())
    assert not diff, "run python tests/golden/make.py:\n" + "\n".join(diff)


# ---- (b) META: every action, every profile ----------------------------------------------


def test_every_action_is_used_by_a_golden_run_under_every_profile() -> None:
    exist = existing_pairs()
    assert {sig(a) for a in REGISTRY} == {a for a, _ in exist}, "an action exists under no profile"
    used = uses(recorded())
    gaps = coverage_gaps(used, exist)
    assert not gaps, f"{len(gaps)} (action, profile) pairs lack a golden run:\n" + "\n".join(gaps)


def test_known_exceptions_are_exact_and_covered() -> None:
    exist = existing_pairs()
    used = uses(recorded())
    for pair, k in known_pairs().items():
        a, p = pair
        assert pair in exist, f"KNOWN lists {a} under {p}, where it does not exist"
        here = [u for u in used if u.pair == pair]
        assert not any(u.clean and not u.overrides for u in here), (
            f"KNOWN lists {a} under {p}, but a golden run uses it under the profile's own flags")
        if k.golden is None:
            assert pair in NO_GOLDEN_RUN, f"{a} under {p}: no golden scenario named"
        else:
            assert any(u.stem == k.golden and u.clean and u.overrides for u in here), (
                f"{k.golden}.calls does not use {a} under {p} with overrides")
        if k.kind == "violates":
            assert any(u.stem == k.own and not u.clean and not u.overrides for u in here), (
                f"{k.own}.calls records no expected violation using {a} under {p}")
        else:
            assert k.kind == "never"
            _assert_impossible(k.own, a, p)
    for pair, elsewhere in NO_GOLDEN_RUN.items():
        a, p = pair
        assert pair in known_pairs(), f"NO_GOLDEN_RUN lists {a} under {p}, not in KNOWN"
        assert not any(u.pair == pair and u.clean for u in used)
        for stem in elsewhere:
            assert any(u.stem == stem and u.clean and u.pair[0] == a for u in used), (
                f"{stem}.calls has no golden run using {a}")


def _assert_impossible(stem: str, action: str, profile: str) -> None:
    """Under the profile's own flags the scenario's call of `action` cannot happen."""
    sc = load_scenario(str(GOLDEN / f"{stem}.calls"))
    assert not sc.sets, f"{stem}.calls has overrides"
    run = make.execute(sc, profile)
    assert run.impossible is not None, f"{stem}.calls runs to the end under {profile}"
    k = run.impossible[0]
    resolved = resolve_all(sc, make.system_for(sc, profile))
    assert sig(resolved[k - 1].action) == action, f"{stem}.calls: call {k} is not {action}"


def test_meta_test_reports_a_missing_golden_run() -> None:
    """The meta-test can fail: without the per-program JIT's golden scenario, its actions
    are used by no golden run under 5.2."""
    exist = existing_pairs()
    kept = [t for t in recorded() if t.stem != "bpf_jit"]
    gaps = coverage_gaps(uses(kept), exist)
    assert "bpf_int_jit_compile(prog) is used by no golden run under v5.2" in gaps
    assert any("under v5.2's own flags" in g for g in gaps)
    # and an override run does not count for the profile's own flags
    kept = [t for t in kept if t.stem != "module_loader"]
    gaps = coverage_gaps(uses(kept), exist)
    assert any(g.startswith("move_module(area, npages) is used by no golden run under v5.2's own")
               for g in gaps)


def test_states_are_values() -> None:
    """A state and each of its parts are frozen and hashable: the BFS engine keeps states in
    a set and the step cache keys on their parts (mutation testing: a part made mutable,
    hence unhashable, went unnoticed, since no fast check hashed a state)."""
    s = System.build("v5.19").initial()
    parts = [s, *(getattr(s, f.name) for f in dataclasses.fields(s))]
    assert len({hash(p) for p in parts}) == len(parts)
    for part in parts:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(part, dataclasses.fields(part)[0].name, None)


def test_instances_are_values() -> None:
    """An action instance is frozen and hashable, equal by action and parameters (mutation
    testing: a mutable, hence unhashable, Instance went unnoticed)."""
    system = System.build("v5.19")
    a, b = system.instances[0], System.build("v5.19").instances[0]
    assert a == b and hash(a) == hash(b) and len(set(system.instances)) == len(system.instances)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.items = ()  # type: ignore[misc]
