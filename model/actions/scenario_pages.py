"""Calls on struct pages as real drivers make them: the page allocator, page references,
user mappings of single pages and raw writes of struct page fields (mm/page_alloc.c,
include/linux/mm.h, mm/memory.c, include/linux/list.h; 5.17 unless named).

Only scenarios make these calls. A page is named by the pointer a driver holds (`page`,
a slot of `refs`); which frame that is, is state. Guards say only what the kernel forbids:
a put_page that underflows or a page that fails the free-time checks is a step the kernel
takes, and an invariant catches it.
"""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx, call, lowest_free, product
from model.actions.drivers import on_page, set_ref
from model.actions.page_alloc import (
    _free_block,
    alloc_pages,
    frames_free,
    get_page,
    get_page_ok,
    page_add_rmap,
    page_remove_rmap,
    put_page,
    write_field,
)
from model.logic import Logic
from model.state import (
    MAPPING_FILE,
    MAPPING_NULL,
    OWN_NONE,
    PG_BASE,
    PG_HEAD,
    PG_TAIL,
    UNINIT,
    State,
    evolve,
)

Params = dict[str, Any]

HELD = ("no such page: `page` was never looked up or allocated",
        lambda s, p, c, L: s.refs.held[p["page"]])


def orders(c: Ctx) -> range:
    """Allocation orders whose blocks fit in a huge page of the scope."""
    return range(c.bounds.hpage.bit_length())


def _block(c: Ctx, frame: int, order: int) -> range | None:
    """The buddy block of 2^order frames at `frame`, None unless it is one: naturally
    aligned. An order of `orders` is at most hpage's and both are powers of two, so an
    aligned block lies within one huge page, and the scope ends at a huge page's end."""
    n = 1 << order
    if frame % n:
        return None
    return range(frame, frame + n)


def _lowest_page(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    return lowest_free(p["page"], lambda j: L.not_(s.refs.held[j]), L)


def _fits(s: State, frame: int, order: int, c: Ctx, L: Logic) -> Any:
    blk = _block(c, frame, order)
    if blk is None:
        return False
    return L.and_(L.eq(s.areas.owner[frame // c.bounds.hpage], OWN_NONE), frames_free(s, blk, L))


def _first_fit(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    """The buddy allocator's choice, reduced to the lowest free aligned block outside every
    vm area: free blocks are interchangeable up to renaming frames."""
    o = p["order"]
    return L.and_(_fits(s, p["frame"], o, c, L),
                  L.not_(L.any_(_fits(s, f, o, c, L) for f in range(p["frame"]))))


ALLOC_CHECKS = (
    ("all driver page pointers are in use (bound refs)", _lowest_page),
    ("no free block of order {order} (the allocation fails and returns NULL)", _first_fit),
)


def _alloc_domain(c: Ctx) -> list[Params]:
    return [q for q in product(page=range(c.bounds.refs), frame=range(c.bounds.frames),
                               order=orders(c), gfp=("GFP_KERNEL", "__GFP_COMP"))
            if _block(c, q["frame"], q["order"]) is not None]


def _take(s: State, p: Params, compound: bool, c: Ctx, L: Logic) -> State:
    blk = _block(c, p["frame"], p["order"])
    assert blk is not None
    s = alloc_pages(s, blk, compound, UNINIT, c, L, each_counted=False)
    return set_ref(s, p["page"], L, held=True, frame=p["frame"], counted=True, mapped=False)


@call("page_alloc", ("page", "frame", "order", "gfp"), _alloc_domain, *ALLOC_CHECKS,
      implicit=("page", "frame"), returns="page")
def alloc_pages_(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """alloc_pages(gfp, order) (mm/page_alloc.c, 5.17): a 2^order block; with __GFP_COMP a
    compound page (prep_compound_page: tails with _refcount 0, TAIL_MAPPING, compound_head),
    without it only the first page is refcounted. The caller holds that reference."""
    return _take(s, p, p["gfp"] == "__GFP_COMP", c, L)


def _gfp_domain(c: Ctx) -> list[Params]:
    return [{k: v for k, v in q.items() if k != "gfp"} for q in _alloc_domain(c)
            if q["gfp"] == "GFP_KERNEL"]


@call("page_alloc", ("page", "frame", "order"), _gfp_domain, *ALLOC_CHECKS,
      implicit=("page", "frame"), returns="page")
def __get_free_pages(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """__get_free_pages(gfp, order) (mm/page_alloc.c, 5.17): alloc_pages without
    __GFP_COMP, returning the block's direct-map address (page_address)."""
    return _take(s, p, False, c, L)


def _index_domain(c: Ctx) -> list[Params]:
    return product(page=range(c.bounds.refs), kaddr=range(c.bounds.refs), index=range(c.bounds.hpage))


@call("page_alloc", ("page", "kaddr", "index"), _index_domain,
      ("all driver page pointers are in use (bound refs)", _lowest_page),
      ("no such memory: `kaddr` was never allocated", lambda s, p, c, L: s.refs.held[p["kaddr"]]),
      ("kaddr + index * PAGE_SIZE lies beyond the last frame of the machine",
       lambda s, p, c, L: L.lt(s.refs.frame[p["kaddr"]], c.bounds.frames - p["index"])),
      implicit=("page",), returns="page")
def virt_to_page(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """virt_to_page(kaddr + index * PAGE_SIZE) (arch/x86/include/asm/page.h): the struct page
    of a direct-map address, such as a page of a __get_free_pages block (af_packet's
    pgv_to_page). No reference is taken."""
    frame = L.add(s.refs.frame[p["kaddr"]], p["index"])
    return set_ref(s, p["page"], L, held=True, frame=frame, counted=False, mapped=False)


def _free_domain(c: Ctx) -> list[Params]:
    return product(page=range(c.bounds.refs), order=orders(c))


def _free_the_page(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """__free_pages (mm/page_alloc.c, 5.17): put_page_testzero on the page itself (no
    compound_head redirect), then free_the_page(page, order) with the free-time checks."""
    order = p["order"]

    def at(f: int) -> State:
        ref = s.pages.refcount
        t = s.replace(pages=evolve(s.pages, refcount=L.store(ref, f, L.sub(ref[f], 1))))
        blk = _block(c, f, order)
        if blk is None:
            return t  # a misaligned block: the model cannot name the pages it would free
        compound = L.eq(s.pages.kind[f], PG_HEAD) if order else False
        zero = L.eq(ref[f], 1)
        t = L.when(L.and_(zero, compound), t, lambda u: _free_block(u, blk, True, c, L, True))
        return L.when(L.and_(zero, L.not_(compound)), t,
                      lambda u: _free_block(u, blk, True, c, L, False))

    s = on_page(s, p["page"], c, L, at)
    return set_ref(s, p["page"], L, counted=False)


@call("page_alloc", ("page", "order"), _free_domain, HELD)
def __free_pages(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """__free_pages(page, order) (mm/page_alloc.c, 5.17): drop the caller's reference on
    `page` itself; the last one frees the 2^order block through free_pages_prepare.
    (The partial free of a non-head page still referenced elsewhere is not modelled.)"""
    return _free_the_page(s, p, c, L)


@call("page_alloc", ("page", "order"), _free_domain, HELD)
def free_pages(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """free_pages(addr, order) (mm/page_alloc.c, 5.17): __free_pages(virt_to_page(addr),
    order) for a __get_free_pages block."""
    return _free_the_page(s, p, c, L)


def _not_compound(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    return on_page(s, p["page"], c, L,
                   lambda f: L.and_(L.ne(s.pages.kind[f], PG_HEAD), L.ne(s.pages.kind[f], PG_TAIL)))


@call("page_alloc", ("page", "order"), _free_domain, HELD,
      ("split_page: VM_BUG_ON_PAGE(PageCompound(page)): a compound page cannot be split",
       _not_compound))
def split_page_(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """split_page(page, order) (mm/page_alloc.c, 5.17): a non-compound high-order block
    becomes 2^order order-0 pages, each with its own refcount of 1 (set_page_refcounted)."""

    def at(f: int) -> State:
        blk = _block(c, f, p["order"])
        if blk is None:
            return s
        ref, kind = s.pages.refcount, s.pages.kind
        for g in blk[1:]:
            ref = L.store(ref, g, 1)
            kind = L.store(kind, g, PG_BASE)
        return s.replace(pages=evolve(s.pages, refcount=ref, kind=kind))

    return on_page(s, p["page"], c, L, at)


# ---- references and user mappings ---------------------------------------------------


def _page_domain(c: Ctx) -> list[Params]:
    return product(page=range(c.bounds.refs))


def _below_max(s: State, p: Params, c: Ctx, L: Logic) -> Any:
    return on_page(s, p["page"], c, L, lambda f: get_page_ok(s, f, c, L))


BELOW_MAX = ("the model's refcount bound max_ref is reached (not a kernel limit)", _below_max)


@call("page", ("page",), _page_domain, HELD, BELOW_MAX)
def get_page_(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """get_page(page) (include/linux/mm.h, 5.17): take a reference on compound_head(page):
    correct on a tail."""
    s = on_page(s, p["page"], c, L, lambda f: get_page(s, f, c, L))
    return set_ref(s, p["page"], L, counted=True)


@call("page", ("page",), _page_domain, HELD)
def put_page_(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """put_page(page) (include/linux/mm.h, 5.17): drop a reference on compound_head(page);
    the last one frees the page with the free-time checks. One reference too many is an
    underflow: the kernel does not stop it, refcount_sanity does."""
    s = on_page(s, p["page"], c, L, lambda f: put_page(s, f, c, L))
    return set_ref(s, p["page"], L, counted=False)


@call("page", ("page",), _page_domain, HELD, BELOW_MAX)
def vm_insert_page_(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """vm_insert_page(vma, addr, page) (mm/memory.c, 5.17): install the page in a user VMA:
    get_page on compound_head and the page's own _mapcount (page_add_file_rmap), a field
    tails own."""

    s = on_page(s, p["page"], c, L, lambda f: page_add_rmap(s, f, c, L))
    return set_ref(s, p["page"], L, mapped=True)


@call("page", ("page",), _page_domain, HELD,
      ("the model's mapcount bound max_ref is reached (not a kernel limit)",
       lambda s, p, c, L: on_page(s, p["page"], c, L,
                                  lambda f: L.lt(s.pages.mapcount[f], c.bounds.max_ref))))
def do_set_pte(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """do_set_pte(vmf, page, addr) from finish_fault (mm/memory.c, 5.17): a fault handler
    returned `page` with a reference it took itself (vmf->page); the PTE keeps that
    reference and page_add_file_rmap raises the page's own _mapcount."""

    s = on_page(s, p["page"], c, L, lambda f: page_add_rmap(s, f, c, L, take_ref=False))
    # the reference the handler took now belongs to the PTE: zap_page_range drops it
    return set_ref(s, p["page"], L, mapped=True, counted=False)


@call("page", ("page",), _page_domain, HELD,
      ("nothing to unmap: the page was not mapped to user space through this pointer",
       lambda s, p, c, L: s.refs.mapped[p["page"]]))
def zap_page_range_(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """zap_page_range(vma, addr, size) (mm/memory.c, 5.17) over the page's user PTE:
    page_remove_rmap (its own _mapcount down), then put_page on compound_head."""

    s = on_page(s, p["page"], c, L, lambda f: page_remove_rmap(s, f, c, L))
    return set_ref(s, p["page"], L, mapped=False)


@call("page", ("page",), _page_domain, HELD)
def lock_page(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """lock_page(page) (include/linux/pagemap.h, 5.17: folio_lock(page_folio(page))): sets
    PG_locked on the head, never on a tail; no field the model keeps changes."""
    return s


@call("page", ("page",), _page_domain, HELD)
def unlock_page(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """unlock_page(page) (mm/filemap.c, 5.17: folio_unlock(page_folio(page))): clears
    PG_locked on the head; no field the model keeps changes."""
    return s


@call("page", ("page",), _page_domain, HELD)
def set_page_dirty(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """set_page_dirty(page) (mm/folio-compat.c, 5.17: folio_mark_dirty(page_folio(page))):
    PG_dirty on the head; no field the model keeps changes."""
    return s


@call("page", ("page",), _page_domain, HELD)
def page_mkclean(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """page_mkclean(page) (include/linux/rmap.h, 5.17: folio_mkclean(page_folio(page))):
    write-protects the user PTEs that map it, through the rmap; it writes no struct page
    field the model keeps."""
    return s


# ---- raw writes of base-page fields -------------------------------------------------


def _raw(s: State, p: Params, c: Ctx, L: Logic, field: str, value: Any) -> State:
    return on_page(s, p["page"], c, L, lambda f: write_field(s, f, field, value, L))


@call("raw", ("page",), _page_domain, HELD)
def set_page_mapping(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """`page->mapping = vma->vm_file->f_mapping` (fb_deferred_io_fault, fb_defio.c, 5.17):
    a raw write of a field a tail does not own."""
    return _raw(s, p, c, L, "mapping", MAPPING_FILE)


@call("raw", ("page",), _page_domain, HELD)
def clear_page_mapping(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """`page->mapping = NULL` (fb_deferred_io_cleanup, fb_defio.c, 5.17): on a tail it
    destroys TAIL_MAPPING."""
    return _raw(s, p, c, L, "mapping", MAPPING_NULL)


@call("raw", ("page",), _page_domain, HELD)
def set_page_index(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """`page->index = vmf->pgoff` (fb_deferred_io_fault, fb_defio.c, 5.17)."""
    return _raw(s, p, c, L, "index", True)


@call("raw", ("page",), _page_domain, HELD)
def set_page_private(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """set_page_private(page, v) (include/linux/mm.h, 5.17): a raw write of page->private."""
    return _raw(s, p, c, L, "private", True)


@call("raw", ("page",), _page_domain, HELD)
def INIT_LIST_HEAD(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """INIT_LIST_HEAD(&page->lru) (include/linux/list.h): lru.next shares its word with
    compound_head, so a tail stops being a tail."""
    return _raw(s, p, c, L, "lru", True)


@call("raw", ("page",), _page_domain, HELD)
def list_add_tail(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """list_add_tail(&page->lru, head) (include/linux/list.h; fb_deferred_io_mkwrite's
    pagelist, fb_defio.c, 5.17): writes lru.next, the word of compound_head."""
    return _raw(s, p, c, L, "lru", True)


@call("raw", ("page",), _page_domain, HELD)
def list_del(s: State, p: Params, c: Ctx, L: Logic) -> State:
    """list_del(&page->lru) (include/linux/list.h): poisons lru.next with LIST_POISON1,
    the word of compound_head."""
    return _raw(s, p, c, L, "lru", True)
