"""Loading code: module_alloc and the module loader, the per-program BPF JIT image, and
the W^X steps both share (kernel/module.c, arch/x86/kernel/module.c, kernel/bpf/core.c,
include/linux/filter.h)."""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx, action, lowest_free, product
from model.actions.cpa import change_page_attr, set_memory_nx, set_memory_rw, set_memory_x
from model.actions.vmalloc import (
    area_free,
    area_is,
    is_huge,
    set_vm_flush_reset_perms,
    sizes,
    vm_area_alloc,
    vunmap,
)
from model.logic import Logic
from model.state import (
    CODE,
    DATA,
    OWN_BPF_JIT,
    OWN_MODULE,
    PH_ALLOCATED,
    PH_HALF,
    PH_LOCKED,
    PH_WRITTEN,
    PROG_ALLOCATED,
    PROG_LIVE,
    PROG_NONE,
    TRAP,
    UNINIT,
    Progs,
    State,
    evolve,
)


def module_alloc(
    s: State, area: int, npages: int, owner: int, c: Ctx, L: Logic,
    aligned: bool = True, content: int = UNINIT,
) -> State:
    """module_alloc(size) (arch/x86/kernel/module.c): __vmalloc_node_range in the module
    area, PAGE_KERNEL_EXEC before 5.2 and PAGE_KERNEL from f2c65fb3221a (5.2); huge under
    the vmalloc rule unless it passes VM_NO_HUGE_VMAP (powerpc, 121e6f3258fe). From 6.10
    execmem_alloc(type, size) (mm/execmem.c, 12af2b83d0b1) takes its place for every
    user: the same PAGE_KERNEL mapping, with VM_FLUSH_RESET_PERMS set by execmem itself."""
    huge = module_alloc_huge(c, npages)
    exec_ = c.flags.module_alloc_prot == "rwx"
    s = vm_area_alloc(s, area, npages, owner, huge, exec_, c, L, aligned, content)
    if c.flags.execmem != "none":
        s = set_vm_flush_reset_perms(s, area, L)
    return s


def module_alloc_huge(c: Ctx, npages: int) -> bool:
    return is_huge(c, npages, opt_out=c.flags.module_alloc_no_huge)


def module_memfree(s: State, area: int, npages: int, fail: bool, c: Ctx, L: Logic,
                   text: range | None = None, data: range | None = None,
                   nx_first: bool = False) -> State:
    """module_memfree (kernel/module.c): vfree. Before VM_FLUSH_RESET_PERMS the owner first
    put back what module_alloc had mapped, by hand: 5.1's disable_ro_nx makes the text
    writable again (set_memory_rw, still executable) and the data executable again
    (set_memory_x); 5.1's bpf_jit_binary_unlock_ro only makes the image writable; 5.1's
    free_insn_page and tramp_free (`nx_first`) make the page NX, then RW."""
    fl = c.flags
    if not fl.flush_reset_perms and fl.free_resets_perms and text is not None:
        if nx_first:
            s = set_memory_nx(s, area, text, fail, c, L)
        s = set_memory_rw(s, area, text, fail, c, L)
        if data is not None and len(data):
            s = set_memory_x(s, area, data, fail, c, L)
    return vunmap(s, area, npages, module_alloc_huge(c, npages), fail, c, L)


def text_range(c: Ctx, area: int, npages: int, owner: int) -> range:
    """Pages of an image that become RO+X: a JIT image whole; a module all but its last
    page, which holds data (layout_sections page-aligns text and data)."""
    start = c.bounds.zone(area).start
    if owner == OWN_MODULE and npages > 1:
        return range(start, start + npages - 1)
    return range(start, start + npages)


def data_range(c: Ctx, area: int, npages: int) -> range:
    """A module's pages after its text (`text_range`): its data; none for one page."""
    return range(text_range(c, area, npages, OWN_MODULE).stop, c.bounds.zone(area).start + npages)


def _flush_on_alloc(s: State, area: int, c: Ctx, L: Logic) -> State:
    if c.flags.flush_reset_perms and c.flags.free_resets_perms:
        return set_vm_flush_reset_perms(s, area, L)
    return s


def _set_phase(s: State, area: int, phase: int, L: Logic) -> State:
    return s.replace(areas=evolve(s.areas, phase=L.store(s.areas.phase, area, phase)))


# ---- the module loader -------------------------------------------------------------


def _plain_loader(c: Ctx) -> bool:
    """Module text from module_alloc or a plain execmem_alloc: not from the ROX cache, whose
    loader is model.actions.execmem's."""
    return c.flags.execmem != "rox_cache"


@action("module", ("area", "npages"),
        lambda c: product(area=range(c.bounds.areas), npages=sizes(c)) if _plain_loader(c) else [],
        lambda s, p, c, L: area_free(s, p["area"], p["npages"], c, L),
        implicit=("area",), returns="area")
def move_module(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """move_module (kernel/module.c): module_alloc the core image, memset it to zero and
    copy the sections in while it is still writable: text pages then a data page. From
    5.2 the loader marks the image VM_FLUSH_RESET_PERMS."""
    area, n = p["area"], p["npages"]
    s = module_alloc(s, area, n, OWN_MODULE, c, L, content=CODE)
    if n > 1:
        cells = c.bounds.cells
        last = c.bounds.zone(area).start + n - 1
        cont = s.pages.content
        for k in range(last * cells, (last + 1) * cells):
            cont = L.store(cont, k, DATA)
        s = s.replace(pages=evolve(s.pages, content=cont))
    s = _flush_on_alloc(s, area, c, L)
    return _set_phase(s, area, PH_WRITTEN, L)


def _lock_domain(c: Ctx) -> list[dict[str, Any]]:
    if not _plain_loader(c) or c.flags.lock_order == "rox":
        return []
    return product(area=range(c.bounds.areas), npages=sizes(c), fail=c.fail_choices)


def _owner_of_image(s: State, area: int, npages: int, L: Logic) -> Any:
    return L.or_(area_is(s, area, npages, OWN_MODULE, L),
                 L.and_(area_is(s, area, npages, OWN_BPF_JIT, L), L.eq(npages, 1)))


def _lock_step(s: State, p: dict[str, Any], c: Ctx, L: Logic, which: str) -> Any:
    """Where the W^X protocol of the version lets the owner call `which` next."""
    fl = c.flags
    first = "ro" if fl.lock_order == "ro_then_x" else "x"
    if fl.lock_order == "rox":
        return L.and_(which == "rox", _owner_of_image(s, p["area"], p["npages"], L),
                      L.eq(s.areas.phase[p["area"]], PH_WRITTEN))
    if which == "rox":
        return False
    if fl.module_alloc_prot == "rwx":
        if which != "ro":
            return False  # already executable: nothing to make executable
        at = L.eq(s.areas.phase[p["area"]], PH_WRITTEN)
    else:
        at = L.eq(s.areas.phase[p["area"]], PH_WRITTEN if which == first else PH_HALF)
    return L.and_(_owner_of_image(s, p["area"], p["npages"], L), at)


def _after_lock_step(s: State, area: int, c: Ctx, L: Logic) -> State:
    done = c.flags.module_alloc_prot == "rwx"
    nxt = L.ite(L.eq(s.areas.phase[area], PH_WRITTEN), PH_LOCKED if done else PH_HALF, PH_LOCKED)
    return _set_phase(s, area, nxt, L)


def _image_text(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> range:
    # a BPF JIT image is always one page; only a module has a data page to leave alone
    owner = OWN_MODULE if p["npages"] > 1 else OWN_BPF_JIT
    return text_range(c, p["area"], p["npages"], owner)


def _lock_call(s: State, p: dict[str, Any], c: Ctx, L: Logic, w: bool | None,
               x: bool | None, locked: bool = False) -> State:
    """One locking step: the CPA call, the phase it moves the image to (`locked`: straight
    to PH_LOCKED, as one set_memory_rox does), then the 6.9 error path, which frees it."""
    area, n, fail = p["area"], p["npages"], p["fail"]
    s, err = change_page_attr(s, area, _image_text(s, p, c, L), w, x, fail, c, L)
    s = _set_phase(s, area, PH_LOCKED, L) if locked else _after_lock_step(s, area, c, L)
    if c.flags.set_memory_errors != "checked":
        return s
    # d1909c022173 (6.9): complete_formation fails, load_module frees the module memory
    return L.when(L.and_(err, L.eq(s.areas.owner[area], OWN_MODULE)), s,
                  lambda t: module_memfree(t, area, n, fail, c, L, text_range(c, area, n, OWN_MODULE),
                                           data_range(c, area, n)))


@action("code", ("area", "npages", "fail"), _lock_domain,
        lambda s, p, c, L: _lock_step(s, p, c, L, "ro"), implicit=("fail",))
def set_memory_ro_(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """set_memory_ro (arch/x86/mm/pat/set_memory.c) on a module's text (module_enable_ro,
    kernel/module.c) or a JIT image (bpf_jit_binary_lock_ro, include/linux/filter.h): clear
    _PAGE_RW on the vmalloc PTEs and the direct-map alias. The callers ignore its error
    (5.2 to 6.8); from d1909c022173 (6.9) a failure aborts the module load, which frees the
    module memory."""
    return _lock_call(s, p, c, L, False, None)


@action("code", ("area", "npages", "fail"), _lock_domain,
        lambda s, p, c, L: _lock_step(s, p, c, L, "x"), implicit=("fail",))
def set_memory_x_(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """set_memory_x (arch/x86/mm/pat/set_memory.c) on a module's text (module_enable_x,
    kernel/module.c, 5.2) or a JIT image (bpf_jit_binary_lock_ro, include/linux/filter.h):
    clear _PAGE_NX on the vmalloc PTEs only; from 6.9 a failure aborts the module load."""
    return _lock_call(s, p, c, L, None, True)


def _rox_lock_domain(c: Ctx) -> list[dict[str, Any]]:
    if not _plain_loader(c) or c.flags.lock_order != "rox":
        return []
    return product(area=range(c.bounds.areas), npages=sizes(c), fail=c.fail_choices)


@action("module", ("area", "npages", "fail"), _rox_lock_domain,
        lambda s, p, c, L: _lock_step(s, p, c, L, "rox"), implicit=("fail",))
def module_enable_text_rox(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """module_enable_text_rox (kernel/module/strict_rwx.c, as read in 6.10): set_memory_rox on
    the module's text, one CPA pass; a failure aborts the load (complete_formation)."""
    return _lock_call(s, p, c, L, False, True, locked=True)


@action("module", ("area", "npages", "fail"),
        lambda c: product(area=range(c.bounds.areas), npages=sizes(c), fail=c.fail_choices)
        if _plain_loader(c) else [],
        lambda s, p, c, L: L.and_(area_is(s, p["area"], p["npages"], OWN_MODULE, L),
                                  L.eq(s.areas.phase[p["area"]], PH_LOCKED)), implicit=("fail",))
def module_memfree_(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """free_module -> module_memfree (kernel/module.c): unload a module, restoring the
    permissions by hand before 5.2, through VM_FLUSH_RESET_PERMS from 5.2."""
    area, n = p["area"], p["npages"]
    return module_memfree(s, area, n, p["fail"], c, L, text_range(c, area, n, OWN_MODULE),
                          data_range(c, area, n))


# ---- BPF before packs: one JIT image per program ----------------------------------


def _progs(s: State, L: Logic, prog: int, state: int, area: int | None = None,
           chunk: int | None = None) -> State:
    pr = s.progs
    return s.replace(progs=Progs(
        L.store(pr.state, prog, state),
        pr.area if area is None else L.store(pr.area, prog, area),
        pr.chunk if chunk is None else L.store(pr.chunk, prog, chunk),
    ))


@action("bpf", ("prog", "area"),
        lambda c: [] if c.flags.bpf_prog_pack else
        product(prog=range(c.bounds.progs), area=range(c.bounds.areas)),
        lambda s, p, c, L: L.and_(lowest_free(p["prog"], lambda j: L.eq(s.progs.state[j], PROG_NONE), L),
                                  area_free(s, p["area"], 1, c, L)),
        implicit=("prog", "area"), returns="prog")
def bpf_jit_binary_alloc(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """bpf_jit_binary_alloc (kernel/bpf/core.c, before packs): module_alloc one image
    and fill all of it with illegal instructions (bpf_fill_ill_insns, INT3 on x86)."""
    s = module_alloc(s, p["area"], 1, OWN_BPF_JIT, c, L, content=TRAP)
    s = _flush_on_alloc(s, p["area"], c, L)
    return _progs(s, L, p["prog"], PROG_ALLOCATED, p["area"], 0)


def _prog_domain(c: Ctx) -> list[dict[str, Any]]:
    return [] if c.flags.bpf_prog_pack else product(prog=range(c.bounds.progs))


def on_image(s: State, prog: int, c: Ctx, L: Logic, fn: Any) -> Any:
    """`fn(area)` for the JIT image area of program `prog`."""
    return L.case(s.progs.area[prog], range(c.bounds.areas), fn)


@action("bpf", ("prog",), _prog_domain,
        lambda s, p, c, L: L.and_(
            L.eq(s.progs.state[p["prog"]], PROG_ALLOCATED),
            on_image(s, p["prog"], c, L, lambda a: L.eq(s.areas.phase[a], PH_ALLOCATED))))
def bpf_int_jit_compile(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """bpf_int_jit_compile (arch/x86/net/bpf_jit_comp.c, before packs): emit the program
    into its image while the image is still RW+NX."""

    def emit(area: int) -> State:
        first = c.bounds.zone(area).start * c.bounds.cells
        t = s.replace(pages=evolve(s.pages, content=L.store(s.pages.content, first, CODE)))
        return _set_phase(t, area, PH_WRITTEN, L)

    s = on_image(s, p["prog"], c, L, emit)
    return _progs(s, L, p["prog"], PROG_LIVE)


@action("bpf", ("prog", "fail"),
        lambda c: [] if c.flags.bpf_prog_pack else
        product(prog=range(c.bounds.progs), fail=c.fail_choices),
        lambda s, p, c, L: L.and_(
            L.ne(s.progs.state[p["prog"]], PROG_NONE),
            on_image(s, p["prog"], c, L, lambda a: L.or_(L.eq(s.areas.phase[a], PH_LOCKED),
                                                          L.eq(s.areas.phase[a], PH_ALLOCATED)))),
        implicit=("fail",))
def bpf_jit_binary_free(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """bpf_jit_binary_free (kernel/bpf/core.c): module_memfree the image of a dead (or
    never compiled) program; before 5.2 bpf_jit_binary_unlock_ro made it RW first."""

    def free(area: int) -> State:
        text = range(c.bounds.zone(area).start, c.bounds.zone(area).start + 1)
        return module_memfree(s, area, 1, p["fail"], c, L, text)

    s = on_image(s, p["prog"], c, L, free)
    return _progs(s, L, p["prog"], PROG_NONE)

