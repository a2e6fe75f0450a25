"""The other users of module_alloc'ed executable memory in 5.1 to 6.0: BPF trampolines and
the BPF dispatcher, kprobes instruction pages and ftrace trampolines (x86; the sources and
quotes per version are in docs/users-by-version.md).

Each user writes only part of its page (a trampoline, a slot, a few instructions): the
first content cell of the frame gets code, the rest keeps what module_alloc left there,
which is not zeroed in any of these versions (GFP_KERNEL without __GFP_ZERO).
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx, action, product
from model.actions.code import module_alloc, module_memfree
from model.actions.cpa import (
    lock_text,
    set_memory_nx,
    set_memory_ro,
    set_memory_rox,
    set_memory_rw,
    set_memory_x,
)
from model.actions.execmem import cache_free, cache_take, cache_text, execmem_force_rw, from_cache, rox_cache
from model.actions.vmalloc import area_free, area_is, set_vm_flush_reset_perms
from model.logic import Logic
from model.state import (
    CODE,
    OWN_DISPATCHER,
    OWN_FTRACE,
    OWN_KPROBES,
    OWN_STRUCT_OPS,
    OWN_TRAMPOLINE,
    PH_HALF,
    PH_LOCKED,
    PH_WRITTEN,
    State,
    evolve,
)

Params = dict[str, Any]


def _page(c: Ctx, area: int) -> range:
    start = c.bounds.zone(area).start
    return range(start, start + 1)


def _write_first_cell(s: State, area: int, c: Ctx, L: Logic) -> State:
    """Code in the first content cell of the area's page: the part the user writes."""
    cell = c.bounds.zone(area).start * c.bounds.cells
    return s.replace(pages=evolve(s.pages, content=L.store(s.pages.content, cell, CODE)))


def _phase(s: State, area: int, phase: int, L: Logic) -> State:
    return s.replace(areas=evolve(s.areas, phase=L.store(s.areas.phase, area, phase)))


def _alloc_page(s: State, area: int, owner: int, c: Ctx, L: Logic, flush: bool = True) -> State:
    s = module_alloc(s, area, 1, owner, c, L)
    if flush and c.flags.flush_reset_perms:
        s = set_vm_flush_reset_perms(s, area, L)
    return s


def _area_domain(flag: str, off: tuple[str, ...] = ("none",),  # type: ignore[no-untyped-def]
                 fail: bool = False):
    def domain(c: Ctx) -> list[Params]:
        if getattr(c.flags, flag) in off:
            return []
        if fail:
            return product(area=range(c.bounds.areas), fail=c.fail_choices)
        return product(area=range(c.bounds.areas))

    return domain


def _new_page(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    return area_free(s, p["area"], 1, c, L)


def _cached_user(c: Ctx) -> bool:
    """kprobes and ftrace take their pages from the execmem ROX cache (6.17)."""
    return rox_cache(c) and c.flags.rox_cache_users == "module_kprobes_ftrace"


def _cache_page(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    return from_cache(s, p["area"], c, L) if _cached_user(c) else _new_page(s, p, c, L)


def _free_of(owner: int, phase: int | None = None):  # type: ignore[no-untyped-def]
    def guard(s: State, p: Params, c: Ctx, L: Logic) -> Any:
        if _cached_user(c) and owner in (OWN_KPROBES, OWN_FTRACE):
            own = L.and_(L.eq(s.areas.owner[p["area"]], owner), s.areas.cached[p["area"]])
        else:
            own = area_is(s, p["area"], 1, owner, L)
        return own if phase is None else L.and_(own, L.eq(s.areas.phase[p["area"]], phase))

    return guard


# ---- BPF trampolines and the dispatcher (5.5 to 6.7) -----------------------------------

# from 6.8 (3ba026fca878) x86 trampolines are bpf_prog_pack chunks: the program slots stand
# for them, allocated by bpf_prog_pack_alloc and written by bpf_arch_text_copy
_TRAMP_PAGES = ("none", "pack")


@action("bpf", ("area", "fail"), _area_domain("bpf_trampoline", _TRAMP_PAGES, fail=True), _new_page,
        implicit=("area", "fail"), returns="area")
def bpf_trampoline_update(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """bpf_trampoline_update (kernel/bpf/trampoline.c; fec56f5890d9, 5.5): a new image page.
    5.5 to 6.0: bpf_jit_alloc_exec_page (module_alloc, set_vm_flush_reset_perms, set_memory_x
    "Keep image as writeable": RW+X), then arch_prepare_bpf_trampoline writes part of it
    with plain stores. 6.1 to 6.7 (5b0d1c7bd572): bpf_jit_alloc_exec and
    set_vm_flush_reset_perms, written while RW+NX, then set_memory_ro and set_memory_x
    (set_memory_rox from 6.2); from 6.10 a failure frees the image and fails the update."""
    area, fail = p["area"], p["fail"]
    s = _alloc_page(s, area, OWN_TRAMPOLINE, c, L)
    if c.flags.bpf_trampoline == "rwx":
        s = set_memory_x(s, area, _page(c, area), fail, c, L)
        return _write_first_cell(s, area, c, L)
    s = _write_first_cell(s, area, c, L)
    s, err = lock_text(s, area, _page(c, area), fail, c, L)
    s = _phase(s, area, PH_LOCKED, L)
    if c.flags.set_memory_errors == "checked":
        s = L.when(err, s, lambda t: module_memfree(t, area, 1, fail, c, L))
    return s


@action("bpf", ("area", "fail"), _area_domain("bpf_trampoline", _TRAMP_PAGES, fail=True),
        _free_of(OWN_TRAMPOLINE), implicit=("fail",))
def bpf_tramp_image_put(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """bpf_tramp_image_put -> bpf_jit_free_exec (kernel/bpf/trampoline.c, 5.12 to 6.0):
    module_memfree of the image; VM_FLUSH_RESET_PERMS resets its direct-map alias."""
    return module_memfree(s, p["area"], 1, p["fail"], c, L)


def _no_dispatcher(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    return L.and_(area_free(s, p["area"], 1, c, L),
                  L.all_(L.ne(o, OWN_DISPATCHER) for o in s.areas.owner))


@action("bpf", ("area", "fail"), _area_domain("bpf_trampoline", ("none", "ro_x", "pack"), fail=True),
        _no_dispatcher,
        implicit=("area", "fail"), returns="area")
def bpf_dispatcher_update(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """bpf_dispatcher_update (kernel/bpf/dispatcher.c, 5.6 to 6.0): the dispatcher's image,
    one page from bpf_jit_alloc_exec_page (module_alloc, set_vm_flush_reset_perms,
    set_memory_x while writable), written half by half with plain stores and never
    freed. Moved into bpf_prog_pack by 19c02415da23 (6.1)."""
    area = p["area"]
    s = _alloc_page(s, area, OWN_DISPATCHER, c, L)
    s = set_memory_x(s, area, _page(c, area), p["fail"], c, L)
    return _write_first_cell(s, area, c, L)


# ---- BPF struct_ops maps (5.6 to 6.0) ---------------------------------------------------


@action("bpf", ("area",), _area_domain("bpf_struct_ops", _TRAMP_PAGES), _new_page,
        implicit=("area",), returns="area")
def bpf_struct_ops_map_alloc(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """bpf_struct_ops_map_alloc (kernel/bpf/bpf_struct_ops.c, 5.6 to 6.0; 85d33df357b6):
    st_map->image = bpf_jit_alloc_exec(PAGE_SIZE), i.e. module_alloc (RW+NX), then
    set_vm_flush_reset_perms(st_map->image)."""
    return _alloc_page(s, p["area"], OWN_STRUCT_OPS, c, L,
                       flush=c.flags.bpf_struct_ops != "ro_x_no_flush_reset")


def _not_registered(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    return L.and_(_free_of(OWN_STRUCT_OPS)(s, p, c, L), L.ne(s.areas.phase[p["area"]], PH_LOCKED))


def _update_domain(c: Ctx) -> list[Params]:
    if c.flags.bpf_struct_ops in _TRAMP_PAGES:
        return []
    return product(area=range(c.bounds.areas), reg_ok=(True, False), fail=c.fail_choices)


@action("bpf", ("area", "reg_ok", "fail"), _update_domain, _not_registered, implicit=("fail",))
def bpf_struct_ops_map_update_elem(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """bpf_struct_ops_map_update_elem (kernel/bpf/bpf_struct_ops.c, 5.6 to 6.0): each
    member's trampoline written into part of the RW+NX image with plain stores
    (bpf_struct_ops_prepare_trampoline), then set_memory_ro, set_memory_x, and st_ops->reg();
    if reg() fails, set_memory_nx then set_memory_rw, and the map may be updated again."""
    area, fail = p["area"], p["fail"]
    s = _write_first_cell(s, area, c, L)
    s = lock_text(s, area, _page(c, area), fail, c, L)[0]
    if p["reg_ok"]:
        return _phase(s, area, PH_LOCKED, L)
    s = set_memory_nx(s, area, _page(c, area), fail, c, L)
    s = set_memory_rw(s, area, _page(c, area), fail, c, L)
    return _phase(s, area, PH_WRITTEN, L)


@action("bpf", ("area", "fail"), _area_domain("bpf_struct_ops", _TRAMP_PAGES, fail=True),
        _free_of(OWN_STRUCT_OPS), implicit=("fail",))
def bpf_struct_ops_map_free(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """bpf_struct_ops_map_free (kernel/bpf/bpf_struct_ops.c, 5.6 to 6.0):
    bpf_jit_free_exec(st_map->image), module_memfree with VM_FLUSH_RESET_PERMS."""
    return module_memfree(s, p["area"], 1, p["fail"], c, L)


# ---- kprobes instruction pages ------------------------------------------------------------


@action("kprobes", ("area", "fail"), _area_domain("kprobes_insn", fail=True), _cache_page,
        implicit=("area", "fail"), returns="area")
def alloc_insn_page(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """alloc_insn_page (arch/x86/kernel/kprobes/core.c): module_alloc(PAGE_SIZE), mapped
    RW+X before 5.2 and then only set_memory_ro (5.1.0); from 5.2 (7298e24f9042 and the
    VM_FLUSH_RESET_PERMS series) set_vm_flush_reset_perms, set_memory_ro, set_memory_x,
    "TODO: ... ensure that ... it is still zeroed": nothing is written before X. From
    6.17 (5d79c2be5081's series) x86 has no alloc_insn_page of its own: the generic one is
    execmem_alloc(EXECMEM_KPROBES), PAGE_KERNEL_ROX from the ROX cache, filled with INT3."""
    area, fail = p["area"], p["fail"]
    if _cached_user(c):
        return _phase(cache_take(s, area, OWN_KPROBES, L), area, PH_LOCKED, L)
    s = _alloc_page(s, area, OWN_KPROBES, c, L, flush=c.flags.kprobes_insn == "ro_x")
    if c.flags.kprobes_insn == "ro_x":
        s = lock_text(s, area, _page(c, area), fail, c, L)[0]
    else:
        s = set_memory_ro(s, area, _page(c, area), fail, c, L)
    return _phase(s, area, PH_LOCKED, L)


@action("kprobes", ("area",), _area_domain("kprobes_insn"),
        lambda s, p, c, L: L.and_(_free_of(OWN_KPROBES)(s, p, c, L),
                                  L.ne(s.pages.content[c.bounds.zone(p["area"]).start * c.bounds.cells],
                                       CODE)))
def arch_copy_kprobe(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """arch_copy_kprobe (arch/x86/kernel/kprobes/core.c): the probed instruction copied into
    a slot of the page with text_poke (the fixmap alias in 5.1, the temporary mm from 5.2):
    the page's RO+X mapping is never made writable."""
    return _write_first_cell(s, p["area"], c, L)


@action("kprobes", ("area", "fail"), _area_domain("kprobes_insn", fail=True),
        _free_of(OWN_KPROBES), implicit=("fail",))
def free_insn_page(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """free_insn_page (kernel/kprobes.c) once every slot is free: module_memfree; the
    permissions are put back by VM_FLUSH_RESET_PERMS from 5.2, by set_memory_nx and
    set_memory_rw in 5.1; from 6.17 execmem_free gives it back to the ROX cache."""
    if _cached_user(c):
        return cache_free(s, p["area"], p["fail"], c, L)
    return module_memfree(s, p["area"], 1, p["fail"], c, L, text=_page(c, p["area"]), nx_first=True)


# ---- ftrace trampolines ---------------------------------------------------------------------


def _ftrace_domain(c: Ctx) -> list[Params]:
    mode = c.flags.ftrace_tramp
    if mode == "none":
        return []
    boots = (False, True) if mode == "boot_x_first" else (False,)
    return product(area=range(c.bounds.areas), boot=boots, fail=c.fail_choices)


@action("ftrace", ("area", "boot", "fail"), _ftrace_domain, _cache_page,
        implicit=("area", "fail"), returns="area")
def create_trampoline(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """create_trampoline (arch/x86/kernel/ftrace.c): module_alloc a page and memcpy
    ftrace_caller into part of it while writable. Then: nothing (5.1: PAGE_KERNEL_EXEC);
    set_memory_x on the still writable page (5.2 to 5.5: "anyhow ftrace breaks W^X
    completely"); set_memory_ro then set_memory_x (768ae4406a5c, 5.6); and from 59566b0b622e
    (5.7 to 6.0) a trampoline created while SYSTEM_BOOTING (`boot`) skips set_memory_ro and
    stays writable until set_ftrace_ops_ro at the end of boot; from eb7d389d5b2b (6.2)
    set_memory_rox, at boot too. From 6.17 alloc_tramp is execmem_alloc_rw(EXECMEM_FTRACE):
    a page of the ROX cache made RW+NX (execmem_force_rw), written, then set_memory_rox."""
    area, fail, mode = p["area"], p["fail"], c.flags.ftrace_tramp
    if _cached_user(c):
        page = cache_text(c, area)
        s, err = execmem_force_rw(cache_take(s, area, OWN_FTRACE, L), area, page, fail, c, L)
        t = _write_first_cell(s, area, c, L)
        t = _phase(set_memory_rox(t, area, page, fail, c, L)[0], area, PH_LOCKED, L)
        # execmem_alloc_rw frees what it could not make writable and returns NULL
        return L.ite(err, cache_free(s, area, fail, c, L), t)
    s = module_alloc(s, area, 1, OWN_FTRACE, c, L)
    s = _write_first_cell(s, area, c, L)
    if c.flags.flush_reset_perms:
        s = set_vm_flush_reset_perms(s, area, L)
    page = _page(c, area)
    if mode == "rwx":
        return _phase(s, area, PH_LOCKED, L)
    if mode == "rox":
        s = set_memory_rox(s, area, page, fail, c, L)[0]
        return _phase(s, area, PH_LOCKED, L)
    if mode == "x_while_w" or p["boot"]:
        s = set_memory_x(s, area, page, fail, c, L)
        return _phase(s, area, PH_HALF, L)
    s = lock_text(s, area, page, fail, c, L)[0]
    return _phase(s, area, PH_LOCKED, L)


@action("ftrace", ("area", "fail"),
        _area_domain("ftrace_tramp", ("none", "rwx", "ro_x", "rox"), fail=True),
        _free_of(OWN_FTRACE, PH_HALF), implicit=("fail",))
def set_ftrace_ops_ro(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """set_ftrace_ops_ro (kernel/trace/ftrace.c, 5.7 to 6.0) from mark_rodata_ro at the end
    of boot, and the set_memory_ro that 5.2 to 5.5 did after set_memory_x: the trampoline
    becomes read-only at last."""
    s = set_memory_ro(s, p["area"], _page(c, p["area"]), p["fail"], c, L)
    return _phase(s, p["area"], PH_LOCKED, L)


@action("ftrace", ("area", "fail"), _area_domain("ftrace_tramp", fail=True),
        _free_of(OWN_FTRACE, PH_LOCKED), implicit=("fail",))
def arch_ftrace_trampoline_free(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """arch_ftrace_trampoline_free -> tramp_free (arch/x86/kernel/ftrace.c): module_memfree;
    VM_FLUSH_RESET_PERMS from 5.2, the permissions reset by hand in 5.1; from 6.17
    execmem_free gives it back to the ROX cache."""
    if _cached_user(c):
        return cache_free(s, p["area"], p["fail"], c, L)
    return module_memfree(s, p["area"], 1, p["fail"], c, L, text=_page(c, p["area"]), nx_first=True)

