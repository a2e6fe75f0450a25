"""The page allocator: struct page life cycle (mm/page_alloc.c, include/linux/mm.h).

These are the functions the other subsystems call; they are not steps of their own.
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx
from model.logic import Logic
from model.state import (
    BAD_COMPOUND_HEAD,
    BAD_MAPCOUNT,
    BAD_MAPPING,
    BAD_NONE,
    BAD_NOT_TAIL,
    BAD_REF_ZERO,
    BAD_REFCOUNT,
    BAD_TAIL_MAPPING,
    MAPPING_NULL,
    PG_BASE,
    PG_FREE,
    PG_HEAD,
    PG_TAIL,
    TAIL_MAPPING,
    UNINIT,
    State,
    evolve,
)


def frames_free(s: State, frames: range, L: Logic) -> Any:
    return L.all_(L.eq(s.pages.kind[f], PG_FREE) for f in frames)


def alloc_pages(s: State, frames: range, compound: bool, content: int, c: Ctx, L: Logic,
                each_counted: bool = True) -> State:
    """alloc_pages(gfp, order) (mm/page_alloc.c): a 2^order block fresh from the buddy
    allocator; with __GFP_COMP a compound page: the head holds the order and the only
    refcount, every tail has _refcount 0, mapping TAIL_MAPPING and compound_head = head|1
    (prep_compound_page). Without it, only the first page's refcount is set
    (set_page_refcounted), unless `each_counted`: order-0 pages taken one by one, or a
    block that split_page has already cut up."""
    p = s.pages
    kind, ref, mapping = list(p.kind), list(p.refcount), list(p.mapping)
    lru, index, private = list(p.lru), list(p.index), list(p.private)
    cont = list(p.content)
    cells = c.bounds.cells
    first = frames[0]
    for f in frames:
        if compound and len(frames) > 1:
            kind[f] = PG_HEAD if f == first else PG_TAIL
            mapping[f] = MAPPING_NULL if f == first else TAIL_MAPPING
        else:
            kind[f] = PG_BASE
            mapping[f] = MAPPING_NULL
        ref[f] = 1 if (f == first or (each_counted and not compound)) else 0
        lru[f] = index[f] = private[f] = False
        for k in range(f * cells, (f + 1) * cells):
            cont[k] = content
    return s.replace(pages=evolve(p, kind=tuple(kind), refcount=tuple(ref), mapping=tuple(mapping),
                                  lru=tuple(lru), index=tuple(index), private=tuple(private),
                                  content=tuple(cont)))


def split_page(s: State, frames: range, c: Ctx, L: Logic) -> State:
    """split_page(page, order) (mm/page_alloc.c): turn a non-compound high-order block into
    independent order-0 pages, each with refcount 1 (3b8000ae185c uses it for huge vmalloc
    backing, 5.18-rc4). Modelled at allocation, so the pieces are fresh."""
    return alloc_pages(s, frames, False, UNINIT, c, L)


def vmalloc_pages(s: State, frames: range, huge: bool, c: Ctx, L: Logic, content: int = UNINIT) -> State:
    """vm_area_alloc_pages (mm/vmalloc.c): order-0 pages one by one, or for a huge mapping
    PMD-order blocks, compound (121e6f3258fe, 5.13) or split (3b8000ae185c, 5.18-rc4)."""
    if not huge:
        s2 = s
        for f in frames:
            s2 = alloc_pages(s2, range(f, f + 1), False, content, c, L)
        return s2
    compound = c.flags.huge_backing == "compound"
    return alloc_pages(s, frames, compound, content, c, L)


def compound_target(s: State, f: int, c: Ctx, L: Logic) -> tuple[Any, int]:
    """compound_head(page) (include/linux/page-flags.h): a page whose compound_head word
    has bit 0 set is a tail and is redirected to its head. A driver that wrote page->lru
    cleared that bit, so the kernel then treats the tail as its own head."""
    head = f - f % c.bounds.hpage
    is_tail = L.and_(L.eq(s.pages.kind[f], PG_TAIL), L.not_(s.pages.lru[f]))
    return is_tail, head


def _reason(checks: list[tuple[Any, int]], L: Logic) -> Any:
    """The first failing check's reason (BAD_NONE when all pass): bad_page reports one."""
    out: Any = BAD_NONE
    for failed, reason in reversed(checks):
        out = L.ite(failed, reason, out)
    return out


def free_checks(s: State, frames: range, compound: bool, L: Logic, debug_vm: bool) -> list[Any]:
    """free_pages_prepare (mm/page_alloc.c, 5.17) on a 2^order block: for each page, the
    reason bad_page would print, or BAD_NONE.

    Every tail of a compound page first goes through free_tail_pages_check (with
    CONFIG_DEBUG_VM, as in the 2022 report): from the third tail on, ->mapping must be
    TAIL_MAPPING (the first two keep compound metadata there); then PageTail, then
    compound_head(page) == head; it then resets ->mapping. Every page then goes through
    check_free_page (page_expected_state: _mapcount, ->mapping, _refcount)."""
    p = s.pages
    out = []
    for i, f in enumerate(frames):
        checks: list[tuple[Any, int]] = []
        tail = compound and i > 0
        if tail and debug_vm:  # free_tail_pages_check returns 0 at once without DEBUG_VM
            if i >= 3:
                checks.append((L.ne(p.mapping[f], TAIL_MAPPING), BAD_TAIL_MAPPING))
            checks += [(L.ne(p.kind[f], PG_TAIL), BAD_NOT_TAIL), (p.lru[f], BAD_COMPOUND_HEAD)]
        checks.append((L.ne(p.mapcount[f], 0), BAD_MAPCOUNT))
        if not tail:
            checks.append((L.ne(p.mapping[f], MAPPING_NULL), BAD_MAPPING))
        if i > 0:  # the page being freed is at 0 by construction
            checks.append((L.ne(p.refcount[f], 0), BAD_REFCOUNT))
        out.append(_reason(checks, L))
    return out


def _free_block(s: State, frames: range, cond: Any, c: Ctx, L: Logic,
                compound: bool | None = None) -> State:
    """__free_pages_ok after the last reference (`cond`): free_pages_prepare checks every
    page of the block; a page that fails is reported ("BUG: Bad page state") and the
    block is leaked, never returned to the buddy allocator."""
    p = s.pages
    if compound is None:
        compound = len(frames) > 1
    reasons = free_checks(s, frames, compound, L, c.flags.debug_vm)
    ok = L.all_(L.eq(r, BAD_NONE) for r in reasons)
    free = L.and_(cond, ok)
    kind, mapping, bad = p.kind, p.mapping, p.bad
    for f, r in zip(frames, reasons, strict=True):
        kind = L.store(kind, f, L.ite(free, PG_FREE, kind[f]))
        mapping = L.store(mapping, f, L.ite(free, MAPPING_NULL, mapping[f]))
        report = L.and_(cond, L.ne(r, BAD_NONE), L.eq(bad[f], BAD_NONE))
        bad = L.store(bad, f, L.ite(report, r, bad[f]))
    return s.replace(pages=evolve(p, kind=kind, mapping=mapping, bad=bad))


def _vm_bug_on_zero(s: State, f: int, c: Ctx, L: Logic) -> State:
    """With CONFIG_DEBUG_VM, get_page and put_page_testzero on a page whose refcount is 0
    hit VM_BUG_ON_PAGE (include/linux/mm.h, page_ref.h, 5.17): recorded on the page the
    count lives on. The built-in drivers never get there; a scenario may."""
    if not c.flags.debug_vm:
        return s
    is_tail, head = compound_target(s, f, c, L)
    bad = s.pages.bad
    for g, on in ((head, is_tail), (f, L.not_(is_tail))):
        if g == head and head == f:
            on = True
        hit = L.and_(on, L.eq(s.pages.refcount[g], 0), L.eq(bad[g], BAD_NONE))
        bad = L.store(bad, g, L.ite(hit, BAD_REF_ZERO, bad[g]))
    return s.replace(pages=evolve(s.pages, bad=bad))


def put_page(s: State, f: int, c: Ctx, L: Logic) -> State:
    """put_page(page) (include/linux/mm.h): drop a reference on compound_head(page);
    the last one frees the whole compound page (or the single page) through
    __free_pages_ok with its free-time checks."""
    s = _vm_bug_on_zero(s, f, c, L)
    is_tail, head = compound_target(s, f, c, L)
    is_head = L.eq(s.pages.kind[head], PG_HEAD)
    p = s.pages
    # the refcount lands on the head when the page is (still recognisably) a tail
    ref = p.refcount
    ref_head = L.ite(is_tail, L.sub(ref[head], 1), ref[head])
    ref = L.store(ref, head, ref_head) if head != f else ref
    ref = L.store(ref, f, L.ite(is_tail, ref[f], L.sub(ref[f], 1)))
    s = s.replace(pages=evolve(p, refcount=ref))
    block = range(head, head + c.bounds.hpage)
    to_zero_head = L.and_(is_tail, L.eq(ref[head], 0))
    to_zero_self = L.and_(L.not_(is_tail), L.eq(ref[f], 0))
    if head != f:
        s = _free_block(s, block, L.and_(to_zero_head, is_head), c, L)
        return _free_block(s, range(f, f + 1), to_zero_self, c, L)
    # f is itself the head (or a base page)
    self_head = L.eq(s.pages.kind[f], PG_HEAD)
    s = _free_block(s, block, L.and_(to_zero_self, self_head), c, L)
    return _free_block(s, range(f, f + 1), L.and_(to_zero_self, L.not_(self_head)), c, L)


def get_page(s: State, f: int, c: Ctx, L: Logic) -> State:
    """get_page(page) (include/linux/mm.h): take a reference on compound_head(page)."""
    s = _vm_bug_on_zero(s, f, c, L)
    is_tail, head = compound_target(s, f, c, L)
    ref = s.pages.refcount
    if head != f:
        ref = L.store(ref, head, L.ite(is_tail, L.add(ref[head], 1), ref[head]))
    ref = L.store(ref, f, L.ite(is_tail, ref[f], L.add(ref[f], 1)))
    return s.replace(pages=evolve(s.pages, refcount=ref))


def page_add_rmap(s: State, f: int, c: Ctx, L: Logic, take_ref: bool = True) -> State:
    """A user PTE for page `f` (vm_insert_page, mm/memory.c): get_page on compound_head
    unless the caller hands its own reference over (finish_fault), and the page's own
    _mapcount up (page_add_file_rmap: a field tails own)."""
    if take_ref:
        s = get_page(s, f, c, L)
    mc = s.pages.mapcount
    return s.replace(pages=evolve(s.pages, mapcount=L.store(mc, f, L.add(mc[f], 1))))


def page_remove_rmap(s: State, f: int, c: Ctx, L: Logic) -> State:
    """The user PTE of page `f` torn down (zap_pte_range, mm/memory.c): its own _mapcount
    down, then put_page on compound_head."""
    mc = s.pages.mapcount
    s = s.replace(pages=evolve(s.pages, mapcount=L.store(mc, f, L.sub(mc[f], 1))))
    return put_page(s, f, c, L)


def write_field(s: State, f: int, field: str, value: Any, L: Logic) -> State:
    """A raw store into struct page `f` (`page->mapping = ...`, INIT_LIST_HEAD(&page->lru))."""
    tup = getattr(s.pages, field)
    return s.replace(pages=evolve(s.pages, **{field: L.store(tup, f, value)}))


def get_page_ok(s: State, f: int, c: Ctx, L: Logic) -> Any:
    """The model's bound on refcounts: get_page is possible while below max_ref."""
    is_tail, head = compound_target(s, f, c, L)
    target = L.ite(is_tail, s.pages.refcount[head], s.pages.refcount[f])
    return L.lt(target, c.bounds.max_ref)


def put_page_ok(s: State, f: int, c: Ctx, L: Logic) -> Any:
    """put_page on a refcount of 0 is an underflow the model does not follow further."""
    is_tail, head = compound_target(s, f, c, L)
    target = L.ite(is_tail, s.pages.refcount[head], s.pages.refcount[f])
    return L.lt(0, target)


def free_vmalloc_pages(s: State, frames: range, huge: bool, c: Ctx, L: Logic) -> State:
    """__vunmap's loop (mm/vmalloc.c): __free_pages(area->pages[i], page_order) for each
    backing block: drop vmalloc's reference; pages still referenced by others live on."""
    if huge and (c.flags.huge_backing == "compound" or not c.flags.vfree_each_page):
        return put_page(s, frames[0], c, L)
    for f in frames:
        s = put_page(s, f, c, L)
    return s
