"""Enabledness: the rules the guards encode, checked instance by instance.

Allocations take the lowest vm area slot whose zone is back in the page allocator (first
fit, per size), the lowest free program slot and driver pointer; bpf_prog_pack_alloc
takes the first pack with room and its lowest free chunk; a new pack only when no pack
has room; one boot-time hash table. These are symmetry reductions: a guard that admits
more changes no verdict, so only these tests notice.

Two kinds of test: given states (reached by named calls) where exactly the listed
instances are enabled, and walks along which the enabled allocations are exactly those an
independent oracle of each rule picks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from model.bounds import DEFAULT_BOUNDS, Bounds
from model.logic import CONCRETE
from model.profiles import QUIET_USERS
from model.state import OWN_HASH, OWN_NONE, OWN_PACK, PG_FREE, PROG_NONE, State
from model.system import System
from search.engines.simulate import Walker
from tests.helpers import reach

PACK = "alloc_new_pack(prog={p}, area={a}, aligned=true, fail=false)"
# a program larger than a 4 KiB pack: its own image, in the lowest free slot for two pages
BIG = "bpf_jit_binary_pack_alloc(prog={p}, area={a}, fail=false)"


def everything_in(area: int, hash_: bool = True) -> set[str]:
    """The allocations of area `area` when it is the lowest free slot for every size."""
    out = {f"{name}(area={area}, npages={n})" for name in ("vmalloc", "kvmalloc", "move_module")
           for n in (1, 2)}
    return out | ({f"alloc_large_system_hash(area={area})"} if hash_ else set())


def driver(ref: int) -> set[str]:
    """What a driver may do with the page its pointer `ref` holds (counted, not mapped)."""
    return {f"{name}(ref={ref})" for name in ("put_page", "do_set_pte", "set_page_mapping",
                                              "clear_page_mapping", "set_page_index",
                                              "set_page_private", "INIT_LIST_HEAD")}


@dataclass(frozen=True)
class Given:
    why: str
    profile: str
    calls: list[str]
    enabled: set[str]
    bounds: Bounds = field(default=DEFAULT_BOUNDS)


GIVEN = [
    Given("boot: everything in area 0; a one-page pack is always aligned", "v5.19", [],
          everything_in(0) | {PACK.format(p=0, a=0), BIG.format(p=0, a=0)}),
    Given("boot: a two-page pack mapped with 4 KiB pages may land unaligned", "v6.0", [],
          everything_in(0) | {PACK.format(p=0, a=0),
                              "alloc_new_pack(prog=0, area=0, aligned=false, fail=false)"}),
    Given("boot: a per-program JIT image in the lowest slots", "v5.2", [],
          everything_in(0) | {"bpf_jit_binary_alloc(prog=0, area=0)"}),
    Given("area 0 taken: everything goes to area 1; the driver reaches area 0's pages", "v5.19",
          ["vmalloc(area=0, npages=2)"],
          everything_in(1) | {PACK.format(p=0, a=1), BIG.format(p=0, a=1), "vfree(area=0, npages=2)",
                              "vmalloc_to_page(ref=0, frame=0)", "vmalloc_to_page(ref=0, frame=1)"}),
    Given("first fit per size: frame 1 still referenced, one page fits area 0, two do not",
          "v5.19",
          ["vmalloc(area=0, npages=2)", "vmalloc_to_page(ref=0, frame=1)", "vfree(area=0, npages=2)"],
          {"vmalloc(area=0, npages=1)", "vmalloc(area=1, npages=2)",
           "kvmalloc(area=0, npages=1)", "kvmalloc(area=1, npages=2)",
           "move_module(area=0, npages=1)", "move_module(area=1, npages=2)",
           "alloc_large_system_hash(area=1)", PACK.format(p=0, a=0), BIG.format(p=0, a=1)}
          | driver(0)),
    Given("one boot-time hash table", "v5.19", ["alloc_large_system_hash(area=0)"],
          everything_in(1, hash_=False) | {PACK.format(p=0, a=1), BIG.format(p=0, a=1)}),
    Given("a pack with room: no new pack, its free chunk to the lowest free program", "v5.19",
          [PACK.format(p=0, a=0)],
          everything_in(1) | {"bpf_prog_pack_alloc(prog=1, area=0, chunk=1)", BIG.format(p=1, a=1),
                              "bpf_arch_text_copy(prog=0)", "bpf_prog_pack_free(prog=0, fail=false)"},
          Bounds(progs=3)),
    Given("first fit over packs: the first pack's hole before the second pack's", "v5.19",
          [PACK.format(p=0, a=0), "bpf_prog_pack_alloc(prog=1, area=0, chunk=1)",
           PACK.format(p=2, a=1), "bpf_prog_pack_free(prog=0, fail=false)"],
          {"bpf_prog_pack_alloc(prog=0, area=0, chunk=0)", "bpf_arch_text_copy(prog=1)",
           "bpf_arch_text_copy(prog=2)", "bpf_prog_pack_free(prog=1, fail=false)",
           "bpf_prog_pack_free(prog=2, fail=false)"},
          Bounds(progs=3)),
    Given("first fit in a pack: the lowest of two free chunks", "v5.19",
          [PACK.format(p=0, a=0), "bpf_prog_pack_alloc(prog=1, area=0, chunk=1)",
           "bpf_prog_pack_free(prog=0, fail=false)"],
          everything_in(1) | {"bpf_prog_pack_alloc(prog=0, area=0, chunk=0)", BIG.format(p=0, a=1),
                              "bpf_arch_text_copy(prog=1)", "bpf_prog_pack_free(prog=1, fail=false)"},
          Bounds(chunks=3)),
    Given("every program slot taken: nothing allocates a program", "v5.19",
          [PACK.format(p=0, a=0), "bpf_prog_pack_alloc(prog=1, area=0, chunk=1)"],
          everything_in(1) | {"bpf_arch_text_copy(prog=0)", "bpf_arch_text_copy(prog=1)",
                              "bpf_prog_pack_free(prog=0, fail=false)",
                              "bpf_prog_pack_free(prog=1, fail=false)"}),
    Given("the lowest free driver pointer, below one still held", "v5.19",
          ["vmalloc(area=0, npages=2)", "vmalloc_to_page(ref=0, frame=1)",
           "vmalloc_to_page(ref=1, frame=0)", "put_page(ref=0)"],
          everything_in(1) | {PACK.format(p=0, a=1), BIG.format(p=0, a=1), "vfree(area=0, npages=2)",
                              "vmalloc_to_page(ref=0, frame=0)", "vmalloc_to_page(ref=0, frame=1)"}
          | driver(1),
          Bounds(refs=2)),
    Given("a freed JIT image's slot is reused; a one-page buffer lends only its first frame",
          "v5.2",
          ["bpf_jit_binary_alloc(prog=0, area=0)", "vmalloc(area=1, npages=1)",
           "bpf_jit_binary_free(prog=0, fail=false)"],
          everything_in(0) | {"bpf_jit_binary_alloc(prog=0, area=0)", "vfree(area=1, npages=1)",
                              "vmalloc_to_page(ref=0, frame=2)"}),
    Given("a second JIT image: the next program slot and area", "v5.2",
          ["bpf_jit_binary_alloc(prog=0, area=0)"],
          everything_in(1) | {"bpf_jit_binary_alloc(prog=1, area=1)", "bpf_int_jit_compile(prog=0)",
                              "bpf_jit_binary_free(prog=0, fail=false)"}),
]


@pytest.mark.parametrize("given", GIVEN, ids=[g.why for g in GIVEN])
def test_exactly_these_are_enabled(given: Given) -> None:
    # the 2022 story's allocators; the users of module_alloc'ed text take the same lowest
    # slot (tests/test_users.py), and would only lengthen every expected set here
    system = System.build(given.profile, bounds=given.bounds, overrides=QUIET_USERS)
    got = {str(i) for i in system.enabled(reach(system, given.calls))}
    extra, missing = sorted(got - given.enabled), sorted(given.enabled - got)
    assert not extra and not missing, f"{given.why}\n  enabled but not expected: {extra}\n" \
                                      f"  expected but not enabled: {missing}"


# ---- the rules as oracles, along walks ------------------------------------------------------


def lowest(xs: Iterator[int]) -> int | None:
    return next(iter(sorted(xs)), None)


def lowest_area(system: System, s: State, npages: int) -> int | None:
    """First fit: the lowest unowned slot whose zone's first `npages` frames are free."""
    b = system.bounds
    return lowest(a for a in range(b.areas) if s.areas.owner[a] == OWN_NONE
                  and all(s.pages.kind[f] == PG_FREE for f in b.zone(a)[:npages]))


def free_prog(system: System, s: State) -> int | None:
    return lowest(p for p in range(system.bounds.progs) if s.progs.state[p] == PROG_NONE)


def pack_choice(system: System, s: State) -> tuple[int, int] | None:
    """The first pack (in slot order) with a clear bit, and its lowest clear chunk."""
    b = system.bounds
    for a in range(b.areas):
        if s.areas.owner[a] == OWN_PACK:
            for k in range(b.chunks):
                if not s.areas.bitmap[a * b.chunks + k]:
                    return a, k
    return None


def oracle(system: System, s: State, name: str, params: dict[str, object]) -> dict[str, object] | None:
    """The slot parameters the rule picks for an allocation with these other parameters;
    None where the rule allows none. Actions that choose no slot are not allocations."""
    b, flags = system.bounds, system.flags
    if name in ("vmalloc", "kvmalloc", "move_module"):
        a = lowest_area(system, s, int(params["npages"]))  # type: ignore[call-overload]
        return None if a is None else {"area": a}
    if name == "alloc_large_system_hash":
        a = lowest_area(system, s, b.hpage)
        return None if a is None or OWN_HASH in s.areas.owner else {"area": a}
    if name == "bpf_jit_binary_alloc":
        p, a = free_prog(system, s), lowest_area(system, s, 1)
        return None if p is None or a is None else {"prog": p, "area": a}
    if name == "alloc_new_pack":
        pages = 1 if flags.pack_size == "page" else b.hpage
        p, a = free_prog(system, s), lowest_area(system, s, pages)
        if p is None or a is None or pack_choice(system, s) is not None:
            return None
        return {"prog": p, "area": a}
    if name == "bpf_prog_pack_alloc":
        p, ak = free_prog(system, s), pack_choice(system, s)
        return None if p is None or ak is None else {"prog": p, "area": ak[0], "chunk": ak[1]}
    if name == "vmalloc_to_page":
        r = lowest(r for r in range(b.refs) if not s.refs.held[r])
        return None if r is None else {"ref": r}
    raise KeyError(name)


SLOTS = {"vmalloc": ("area",), "kvmalloc": ("area",), "move_module": ("area",),
         "alloc_large_system_hash": ("area",), "bpf_jit_binary_alloc": ("prog", "area"),
         "alloc_new_pack": ("prog", "area"), "bpf_prog_pack_alloc": ("prog", "area", "chunk"),
         "vmalloc_to_page": ("ref",)}

WALKS = [("v5.2", DEFAULT_BOUNDS), ("v5.18-rc1", DEFAULT_BOUNDS), ("v5.19", DEFAULT_BOUNDS),
         ("v6.0", DEFAULT_BOUNDS), ("v5.19", Bounds(areas=3, frames=6, progs=3, refs=2, chunks=3)),
         ("v5.2", Bounds(areas=3, frames=6, progs=3, refs=2))]


def visited(system: System, seed: int, n: int) -> Iterator[State]:
    walker = Walker(system, seed=seed)
    s = system.initial()
    for k in range(n):
        yield s
        inst = walker.choose(s)
        # restart now and then, and where nothing is enabled: short walks revisit boot
        s = system.initial() if inst is None or k % 40 == 39 else system.step(s, inst)


@pytest.mark.parametrize(("profile", "bounds"), WALKS, ids=[f"{p}-{b.frames}f" for p, b in WALKS])
def test_allocations_take_the_slot_the_rule_picks(profile: str, bounds: Bounds) -> None:
    system = System.build(profile, bounds=bounds)
    seen: set[str] = set()
    for s in visited(system, seed=13, n=400):
        by_other: dict[tuple[str, tuple[tuple[str, object], ...]], set[tuple[object, ...]]] = {}
        for inst in system.enabled(s):
            if inst.name in SLOTS:
                other = tuple((k, v) for k, v in inst.items if k not in SLOTS[inst.name])
                slot = tuple(inst.params[k] for k in SLOTS[inst.name])
                by_other.setdefault((inst.name, other), set()).add(slot)
                seen.add(inst.name)
        for inst in system.instances:
            if inst.name not in SLOTS:
                continue
            other = tuple((k, v) for k, v in inst.items if k not in SLOTS[inst.name])
            got = by_other.get((inst.name, other), set())
            want = oracle(system, s, inst.name, dict(other))
            if inst.name == "vmalloc_to_page":
                # which frames a pointer may take is not a slot rule: only the pointer is
                assert got <= ({(want["ref"],)} if want else set()), (inst.name, other, got, want)
                continue
            expected = set() if want is None else {tuple(want[k] for k in SLOTS[inst.name])}
            assert got == expected, f"{inst.name}{dict(other)}: enabled {got}, the rule picks {expected}"
    # the walks really exercised the rules
    exists = {i.name for i in system.instances} & set(SLOTS)
    assert seen == exists, f"never enabled along the walks: {sorted(exists - seen)}"


def test_vmalloc_to_page_takes_no_reference_past_the_models_bound() -> None:
    """A driver's get_page (driver_get_page, every profile but a seeded bug) is enabled
    while the page's refcount is below max_ref, the scope's bound, and not at it; without
    get_page the bound does not apply (mutation testing: inverting the flag went unnoticed,
    since one driver pointer never takes a refcount to max_ref)."""
    from model.state import OWN_VMALLOC, PG_BASE, evolve, initial_state

    def state(system: System) -> State:
        s = initial_state(system.bounds)
        s = s.replace(pages=evolve(s.pages, kind=(PG_BASE, PG_BASE, *s.pages.kind[2:]),
                                   refcount=(1, system.bounds.max_ref, *s.pages.refcount[2:])))
        return s.replace(areas=evolve(s.areas, owner=(OWN_VMALLOC, *s.areas.owner[1:]),
                                      npages=(2, *s.areas.npages[1:])))

    def enabled(system: System, frame: int) -> bool:
        (inst,) = [i for i in system.instances if i.name == "vmalloc_to_page"
                   and dict(i.items) == {"ref": 0, "frame": frame}]
        return bool(inst.guard(state(system), system.ctx, CONCRETE))

    with_get = System.build("v5.19")
    assert enabled(with_get, 0) and not enabled(with_get, 1)
    without = System.build("v5.19", overrides={"driver_get_page": False})
    assert enabled(without, 0) and enabled(without, 1)


@pytest.mark.parametrize(("order", "first", "then"), [("ro_then_x", "set_memory_ro", "set_memory_x"),
                                                      ("x_then_ro", "set_memory_x", "set_memory_ro")])
def test_a_loader_locks_text_in_its_versions_order(order: str, first: str, then: str) -> None:
    """RO then X from 5.2 (f2c65fb3221a); X then RO is the x-before-ro seeded bug. Only the
    first call is enabled on written text, only the second after it (mutation testing:
    `which == first` -> `which <= first` let set_memory_ro in first under x_then_ro)."""
    system = System.build("v5.2", overrides={**QUIET_USERS, "lock_order": order})
    load = ["move_module(area=0, npages=2)"]

    def locks(calls: list[str]) -> set[str]:
        return {i.name for i in system.enabled(reach(system, calls))
                if i.name in (first, then) and str(i).startswith(f"{i.name}(area=0, npages=2")}

    assert locks(load) == {first}
    assert locks([*load, f"{first}(area=0, npages=2, fail=false)"]) == {then}


@pytest.mark.parametrize(("profile", "flags"), [("v5.2", {"0", "VM_NO_HUGE_VMAP"}),
                                                ("v5.18-rc1", {"0", "VM_NO_HUGE_VMAP"}),
                                                ("v5.19", {"0", "VM_ALLOW_HUGE_VMAP"})])
def test_a_vm_flag_is_passed_only_where_the_kernel_has_it(profile: str, flags: set[str]) -> None:
    """__vmalloc_node_range's vm_flags: VM_ALLOW_HUGE_VMAP where huge vmalloc is opt-in
    (559089e0a93d, 5.18-rc4), VM_NO_HUGE_VMAP where it is not (mutation testing: both rules
    could be inverted unnoticed)."""
    system = System.build(profile, scenario=True)
    got = {str(i).split("vm_flags=")[1].split(",")[0] for i in system.enabled(system.initial())
           if str(i).startswith("__vmalloc_node_range(")}
    assert got == flags


def test_remap_vmalloc_range_stops_at_the_models_refcount_bound() -> None:
    """Each remap takes a reference on every page (on the head for a tail): enabled while
    the counts stay within max_ref, then not (mutation testing: the bound over an empty
    range of frames went unnoticed)."""
    system = System.build("v5.19", scenario=True)
    calls = ["vmalloc_user(area=0, npages=2)"]
    remaps = 0
    for _ in range(system.bounds.max_ref + 1):  # bounded: a wrong guard must fail, not hang
        s = reach(system, calls)
        if "remap_vmalloc_range(addr=0)" not in {str(i) for i in system.enabled(s)}:
            break
        calls.append("remap_vmalloc_range(addr=0)")
        remaps += 1
    assert remaps == system.bounds.max_ref - 1  # from vmalloc's one reference to max_ref
    assert max(s.pages.refcount[f] for f in system.bounds.zone(0)) == system.bounds.max_ref


def test_virt_to_page_reaches_every_page_of_a_block() -> None:
    """virt_to_page(kaddr + index * PAGE_SIZE) on a two-page __get_free_pages block: both
    indices (mutation testing: `frames - index` -> `frames / index` went unnoticed)."""
    system = System.build("v5.19", bounds=Bounds(refs=2), scenario=True)
    s = reach(system, ["__get_free_pages(page=0, frame=0, order=1)"])
    got = {str(i) for i in system.enabled(s) if str(i).startswith("virt_to_page(")}
    assert got == {"virt_to_page(page=1, kaddr=0, index=0)", "virt_to_page(page=1, kaddr=0, index=1)"}
