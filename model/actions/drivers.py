"""Drivers holding a struct page from vmalloc_to_page, as the DRM fbdev emulation's
deferred I/O does (drivers/video/fbdev/core/fb_defio.c) and Piggin's reproducer.

Compound-aware operations (get_page, put_page, vm_insert_page) are correct on a tail;
the raw writes of fields a tail does not own are the bug of 5.18-rc1. A driver names
its page by the pointer it holds (`ref`); which frame that is, is state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model.actions.base import Ctx, action, lowest_free, product
from model.actions.page_alloc import (
    get_page,
    get_page_ok,
    page_add_rmap,
    page_remove_rmap,
    put_page,
    put_page_ok,
    write_field,
)
from model.logic import Logic
from model.state import MAPPING_FILE, MAPPING_NULL, OWN_VMALLOC, State, evolve


def _ref_domain(c: Ctx) -> list[dict[str, Any]]:
    return product(ref=range(c.bounds.refs))


def set_ref(s: State, r: int, L: Logic, **fields: Any) -> State:
    rf = s.refs
    vals = {name: L.store(getattr(rf, name), r, v) for name, v in fields.items()}
    return s.replace(refs=evolve(rf, **vals))


def on_page(s: State, r: int, c: Ctx, L: Logic, fn: Callable[[int], Any]) -> Any:
    """`fn(frame)` for the frame that pointer `r` holds."""
    return L.case(s.refs.frame[r], range(c.bounds.frames), fn)


def _held(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    return s.refs.held[p["ref"]]


def mapping_cleared(s: State, f: int, L: Logic) -> Any:
    """The generic driver's protocol, as fb_deferred_io_cleanup (fb_defio.c, 5.17) follows
    it: `page->mapping = NULL` on every page it set, before a reference is dropped. A
    driver that skips it is a scenario's to write; the free-time check then reports the
    page ("non-NULL mapping")."""
    return L.ne(s.pages.mapping[f], MAPPING_FILE)


def drivers_cleared(s: State, frames: range, c: Ctx, L: Logic) -> Any:
    """No driver pointer into `frames` still has its page->mapping set (see mapping_cleared)."""
    return L.all_(L.implies(L.and_(s.refs.held[r], L.eq(s.refs.frame[r], f)), mapping_cleared(s, f, L))
                  for r in range(c.bounds.refs) for f in frames)


# ---- taking a page --------------------------------------------------------------------


def _vmalloc_to_page_guard(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    f, hp = p["frame"], c.bounds.hpage
    area = f // hp
    return L.and_(
        L.lt(f % hp, s.areas.npages[area]),
        get_page_ok(s, f, c, L) if c.flags.driver_get_page else True,
    )


def _pre_free_ref(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    return L.and_(lowest_free(p["ref"], lambda j: L.not_(s.refs.held[j]), L),
                  L.eq(s.areas.owner[p["frame"] // c.bounds.hpage], OWN_VMALLOC))


@action("driver", ("ref", "frame"),
        lambda c: product(ref=range(c.bounds.refs), frame=range(c.bounds.frames)),
        _vmalloc_to_page_guard, _pre_free_ref, implicit=("ref",), returns="ref")
def vmalloc_to_page(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """vmalloc_to_page (mm/vmalloc.c) in fb_deferred_io_fault (fb_defio.c): the 4 KiB
    struct page behind a vmalloc address, a tail page inside a compound block, then
    get_page on it (compound-aware: the head's refcount)."""
    r, f = p["ref"], p["frame"]
    if c.flags.driver_get_page:
        s = get_page(s, f, c, L)
    return set_ref(s, r, L, held=True, frame=f, counted=c.flags.driver_get_page, mapped=False)


# ---- compound-aware use ---------------------------------------------------------------


@action("driver", ("ref",), _ref_domain,
        lambda s, p, c, L: L.and_(s.refs.counted[p["ref"]], L.not_(s.refs.mapped[p["ref"]]),
                                  on_page(s, p["ref"], c, L, lambda f: L.and_(
                                      put_page_ok(s, f, c, L), mapping_cleared(s, f, L)))),
        _held)
def put_page_(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """put_page (include/linux/mm.h): the driver drops its reference on compound_head;
    the last reference frees the page, with the free-time checks."""
    s = on_page(s, p["ref"], c, L, lambda f: put_page(s, f, c, L))
    return set_ref(s, p["ref"], L, held=False, counted=False)


@action("driver", ("ref",), _ref_domain,
        lambda s, p, c, L: L.and_(s.refs.counted[p["ref"]], L.not_(s.refs.mapped[p["ref"]]),
                                  on_page(s, p["ref"], c, L,
                                          lambda f: L.lt(s.pages.mapcount[f], c.bounds.max_ref))),
        _held)
def do_set_pte(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """finish_fault -> do_set_pte (mm/memory.c, 5.17) after fb_deferred_io_fault returned
    the page it took a reference on: the PTE keeps that reference, page_add_file_rmap
    raises the page's own _mapcount (a field tails own)."""
    s = on_page(s, p["ref"], c, L, lambda f: page_add_rmap(s, f, c, L, take_ref=False))
    return set_ref(s, p["ref"], L, mapped=True, counted=False)


def _can_zap(s: State, f: int, c: Ctx, L: Logic) -> Any:
    # no refcount guard: the PTE's put_page lands wherever compound_head() says, and on a
    # detached tail with _refcount 0 the kernel underflows (or VM_BUG_ONs): refcount_sanity
    return L.and_(L.lt(0, s.pages.mapcount[f]), mapping_cleared(s, f, L))


@action("driver", ("ref",), _ref_domain,
        lambda s, p, c, L: L.and_(s.refs.mapped[p["ref"]],
                                  on_page(s, p["ref"], c, L, lambda f: _can_zap(s, f, c, L))),
        _held)
def zap_page_range(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """zap_page_range (mm/memory.c): munmap of the deferred-I/O VMA: the page's own
    _mapcount down and put_page, which drops the fault's reference on compound_head(page);
    the driver keeps no pointer to it (fb_defio looks pages up again when it needs them)."""
    s = on_page(s, p["ref"], c, L, lambda f: page_remove_rmap(s, f, c, L))
    return set_ref(s, p["ref"], L, held=False, mapped=False, counted=False)


# ---- raw writes of base-page fields ---------------------------------------------------


def _raw(s: State, p: dict[str, Any], c: Ctx, L: Logic, field: str, value: Any) -> State:
    return on_page(s, p["ref"], c, L, lambda f: write_field(s, f, field, value, L))


def _always(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    return True


@action("driver", ("ref",), _ref_domain, _always, _held)
def set_page_mapping(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """`page->mapping = vmf->vma->vm_file->f_mapping` in fb_deferred_io_fault
    (fb_defio.c, before 5.18): a raw write of a field that a tail does not own."""
    return _raw(s, p, c, L, "mapping", MAPPING_FILE)


@action("driver", ("ref",), _ref_domain, _always, _held)
def clear_page_mapping(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """`page->mapping = NULL` in fb_deferred_io_cleanup (fb_defio.c) and Piggin's
    reproducer: on a tail it destroys TAIL_MAPPING ("corrupted mapping in tail page")."""
    return _raw(s, p, c, L, "mapping", MAPPING_NULL)


@action("driver", ("ref",), _ref_domain, _always, _held)
def set_page_index(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """`page->index = vmf->pgoff` in fb_deferred_io_fault (fb_defio.c): a raw
    base-page write."""
    return _raw(s, p, c, L, "index", True)


@action("driver", ("ref",), _ref_domain, _always, _held)
def set_page_private(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """set_page_private (include/linux/mm.h): a raw write of page->private."""
    return _raw(s, p, c, L, "private", True)


@action("driver", ("ref",), _ref_domain, _always, _held)
def INIT_LIST_HEAD(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """INIT_LIST_HEAD(&page->lru) (include/linux/list.h) in Piggin's reproducer and in
    fb_deferred_io_init (fb_defio.c, 5.17): lru.next shares its word with compound_head,
    so a tail stops being a tail."""
    return _raw(s, p, c, L, "lru", True)
