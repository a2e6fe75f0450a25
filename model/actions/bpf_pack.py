"""bpf_prog_pack (kernel/bpf/core.c, 57631054fae6, 5.18-rc1): JIT images packed into
shared RO+X packs, chunks tracked by a bitmap, programs copied in with text_poke."""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx, action, lowest_free, product
from model.actions.code import _progs, module_alloc, module_alloc_huge, module_memfree
from model.actions.cpa import lock_text
from model.actions.vmalloc import area_free, area_is, set_vm_flush_reset_perms
from model.logic import Logic
from model.state import (
    CODE,
    OWN_BPF_JIT,
    OWN_PACK,
    PROG_ALLOCATED,
    PROG_LIVE,
    PROG_NONE,
    TRAP,
    UNINIT,
    State,
    evolve,
)


def pack_pages(c: Ctx) -> int:
    """BPF_PROG_PACK_SIZE in frames: PAGE_SIZE, HPAGE_PMD_SIZE, or PMD_SIZE * nodes."""
    return 1 if c.flags.pack_size == "page" else c.bounds.hpage


def chunk_cells(c: Ctx, area: int, chunk: int) -> range:
    """The content cells of one BPF_PROG_CHUNK_SIZE chunk of the pack in `area`."""
    per = pack_pages(c) * c.bounds.cells // c.bounds.chunks
    first = c.bounds.zone(area).start * c.bounds.cells + chunk * per
    return range(first, first + per)


def bit(c: Ctx, area: int, chunk: int) -> int:
    return area * c.bounds.chunks + chunk


def has_room(s: State, area: int, c: Ctx, L: Logic) -> Any:
    return L.and_(L.eq(s.areas.owner[area], OWN_PACK),
                  L.any_(L.not_(s.areas.bitmap[bit(c, area, k)]) for k in range(c.bounds.chunks)))


def fill_cells(s: State, cells: range, value: int, L: Logic) -> State:
    cont = s.pages.content
    for k in cells:
        cont = L.store(cont, k, value)
    return s.replace(pages=evolve(s.pages, content=cont))


def _set_bit(s: State, i: int, v: Any, L: Logic) -> State:
    return s.replace(areas=evolve(s.areas, bitmap=L.store(s.areas.bitmap, i, v)))


def _pre_no_prog(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    return lowest_free(p["prog"], lambda j: L.eq(s.progs.state[j], PROG_NONE), L)


def _new_pack_domain(c: Ctx) -> list[dict[str, Any]]:
    if not c.flags.bpf_prog_pack:
        return []
    n = pack_pages(c)
    # only a multi-page pack mapped with 4 KiB pages can land unaligned to its own size
    alignments = (True, False) if n > 1 and not module_alloc_huge(c, n) else (True,)
    return product(prog=range(c.bounds.progs), area=range(c.bounds.areas),
                   aligned=alignments, fail=c.fail_choices)


def _new_pack_guard(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    return L.and_(
        L.not_(L.any_(has_room(s, a, c, L) for a in range(c.bounds.areas))),
        area_free(s, p["area"], pack_pages(c), c, L),
    )


@action("bpf", ("prog", "area", "aligned", "fail"), _new_pack_domain, _new_pack_guard, _pre_no_prog,
        implicit=("prog", "area", "aligned", "fail"), returns="prog")
def alloc_new_pack(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """bpf_prog_pack_alloc when no pack has room -> alloc_new_pack (kernel/bpf/core.c):
    module_alloc(BPF_PROG_PACK_SIZE), fill with illegal instructions from d88bb5eed04c
    (5.19), set_vm_flush_reset_perms, set_memory_ro and set_memory_x (set_memory_rox from
    6.2), errors ignored until c733239f8f53 (6.10) frees the pack and fails the load;
    the program takes the first chunk."""
    area, n, fail = p["area"], pack_pages(c), p["fail"]
    s = module_alloc(s, area, n, OWN_PACK, c, L, aligned=p["aligned"],
                     content=TRAP if c.flags.pack_fill else UNINIT)
    if c.flags.free_resets_perms:
        s = set_vm_flush_reset_perms(s, area, L)
    whole = range(c.bounds.zone(area).start, c.bounds.zone(area).start + n)
    s, err = lock_text(s, area, whole, fail, c, L)
    ok = s
    s = _set_bit(s, bit(c, area, 0), True, L)
    s = _progs(s, L, p["prog"], PROG_ALLOCATED, area, 0)
    if c.flags.set_memory_errors != "checked":
        return s
    return L.ite(err, module_memfree(ok, area, n, fail, c, L), s)


def oversized_pages(c: Ctx) -> int:
    """The size in frames of a program too large for a pack: one huge page, when that is
    more than BPF_PROG_PACK_SIZE (the 4 KiB packs of 5.18 to 5.19); larger programs are
    outside the scope, so where packs are 2 MiB there is none."""
    return c.bounds.hpage if pack_pages(c) < c.bounds.hpage else 0


def _oversized_domain(c: Ctx) -> list[dict[str, Any]]:
    if not c.flags.bpf_prog_pack or not oversized_pages(c):
        return []
    return product(prog=range(c.bounds.progs), area=range(c.bounds.areas), fail=c.fail_choices)


@action("bpf", ("prog", "area", "fail"), _oversized_domain,
        lambda s, p, c, L: area_free(s, p["area"], oversized_pages(c), c, L), _pre_no_prog,
        implicit=("prog", "area", "fail"), returns="prog")
def bpf_jit_binary_pack_alloc(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """bpf_jit_binary_pack_alloc -> bpf_prog_pack_alloc (kernel/bpf/core.c, 5.18-rc1 on) of
    a program larger than the pack: "if (size > bpf_prog_pack_size)" it gets its own
    module_alloc(round_up(size, PAGE_SIZE)), filled with illegal instructions from
    d88bb5eed04c (5.19, 5.18.2), then set_vm_flush_reset_perms, set_memory_ro, set_memory_x."""
    area, n = p["area"], oversized_pages(c)
    s = module_alloc(s, area, n, OWN_BPF_JIT, c, L, content=TRAP if c.flags.pack_fill else UNINIT)
    if c.flags.oversized_flush_reset:
        s = set_vm_flush_reset_perms(s, area, L)
    whole = range(c.bounds.zone(area).start, c.bounds.zone(area).start + n)
    s = lock_text(s, area, whole, p["fail"], c, L)[0]
    return _progs(s, L, p["prog"], PROG_ALLOCATED, area, 0)


def image_cells(c: Ctx, area: int) -> range:
    """What bpf_arch_text_copy writes of an oversized image: `size` bytes, the whole image
    but its page tail (the last content cell), which keeps what the allocation left."""
    first = c.bounds.zone(area).start * c.bounds.cells
    return range(first, first + oversized_pages(c) * c.bounds.cells - 1)


def _alloc_domain(c: Ctx) -> list[dict[str, Any]]:
    if not c.flags.bpf_prog_pack:
        return []
    return product(prog=range(c.bounds.progs), area=range(c.bounds.areas),
                   chunk=range(c.bounds.chunks))


def _first_fit(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    area, chunk = p["area"], p["chunk"]
    bm = s.areas.bitmap
    return L.and_(
        L.eq(s.areas.owner[area], OWN_PACK),
        L.not_(bm[bit(c, area, chunk)]),
        L.all_(bm[bit(c, area, k)] for k in range(chunk)),
        L.not_(L.any_(has_room(s, a, c, L) for a in range(area))),
    )


@action("bpf", ("prog", "area", "chunk"), _alloc_domain, _first_fit, _pre_no_prog,
        implicit=("prog", "area", "chunk"), returns="prog")
def bpf_prog_pack_alloc(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """bpf_prog_pack_alloc (kernel/bpf/core.c, 5.18-rc1 on): first fit over the packs in
    list order, bitmap_find_next_zero_area for a free chunk, bitmap_set."""
    s = _set_bit(s, bit(c, p["area"], p["chunk"]), True, L)
    return _progs(s, L, p["prog"], PROG_ALLOCATED, p["area"], p["chunk"])


def _prog_domain(c: Ctx) -> list[dict[str, Any]]:
    return product(prog=range(c.bounds.progs)) if c.flags.bpf_prog_pack else []


def at_chunk(s: State, prog: int, c: Ctx, L: Logic, fn: Any) -> Any:
    """`fn(area, chunk)` for the pack area and chunk that program `prog` holds."""
    return L.case(s.progs.area[prog], range(c.bounds.areas),
                  lambda a: L.case(s.progs.chunk[prog], range(c.bounds.chunks),
                                   lambda k: fn(a, k)))


@action("bpf", ("prog",), _prog_domain,
        lambda s, p, c, L: L.eq(s.progs.state[p["prog"]], PROG_ALLOCATED))
def bpf_arch_text_copy(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """bpf_arch_text_copy -> text_poke_copy (arch/x86/kernel/alternative.c, 5.18-rc1):
    copy the JIT's finished image into the RO+X pack through a temporary mm that maps the
    target writable on this CPU only; the kernel mapping never becomes writable."""
    def copy(a: int, k: int) -> State:
        in_pack = L.eq(s.areas.owner[a], OWN_PACK)
        t = L.when(in_pack, s, lambda u: fill_cells(u, chunk_cells(c, a, k), CODE, L))
        if not oversized_pages(c):
            return t
        return L.when(L.not_(in_pack), t, lambda u: fill_cells(u, image_cells(c, a), CODE, L))

    s = at_chunk(s, p["prog"], c, L, copy)
    return _progs(s, L, p["prog"], PROG_LIVE)


def _free_domain(c: Ctx) -> list[dict[str, Any]]:
    if not c.flags.bpf_prog_pack:
        return []
    return product(prog=range(c.bounds.progs), fail=c.fail_choices)


@action("bpf", ("prog", "fail"), _free_domain,
        lambda s, p, c, L: L.ne(s.progs.state[p["prog"]], PROG_NONE), implicit=("fail",))
def bpf_prog_pack_free(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """bpf_prog_pack_free (kernel/bpf/core.c): an image larger than the pack is
    module_memfree'd; otherwise find the program's pack (by masking the address with the
    pack size, or from ea2babac63d4 (6.0) by range); if none is found, WARN_ONCE and leak.
    Otherwise refill its chunks with bpf_arch_text_invalidate (fe736565efb7, 5.19), clear
    its bits, and free a pack left empty with module_memfree."""
    prog = p["prog"]

    def free_at(area: int, chunk: int) -> State:
        t = _progs(s, L, prog, PROG_NONE)
        if oversized_pages(c):
            own = area_is(s, area, oversized_pages(c), OWN_BPF_JIT, L)
            t = L.when(own, t, lambda u: module_memfree(u, area, oversized_pages(c), p["fail"], c, L))
            return L.when(L.not_(own), t, lambda u: _free_in_pack(u, area, chunk, p["fail"], c, L))
        return _free_in_pack(t, area, chunk, p["fail"], c, L)

    return at_chunk(s, prog, c, L, free_at)


def found_by_mask(t: State, area: int, chunk: int, c: Ctx) -> Any:
    """Whether masking a program's address finds its pack. 5.18-rc1 (ef078600eec2) sizes a
    pack BPF_HPAGE_SIZE * num_online_nodes() but masks with BPF_HPAGE_MASK, and module_alloc
    aligns a huge area to PMD_SIZE only: a program beyond the pack's first PMD masks to an
    address where no pack starts. Otherwise the mask finds a pack aligned to its own size."""
    if c.flags.pack_size == "hpage" and chunk >= c.bounds.chunks // c.bounds.nodes:
        return False
    return t.areas.aligned[area]


def _free_in_pack(t: State, area: int, chunk: int, fail: bool, c: Ctx, L: Logic) -> State:
    found = True if c.flags.pack_lookup == "range" else found_by_mask(t, area, chunk, c)

    def release(u: State) -> State:
        if c.flags.pack_invalidate:
            u = fill_cells(u, chunk_cells(c, area, chunk), TRAP, L)
        u = _set_bit(u, bit(c, area, chunk), False, L)
        empty = L.not_(L.any_(u.areas.bitmap[bit(c, area, k)] for k in range(c.bounds.chunks)))
        return L.when(empty, u, lambda w: module_memfree(w, area, pack_pages(c), fail, c, L))

    return L.when(found, t, release)
