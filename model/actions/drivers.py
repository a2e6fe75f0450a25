"""Drivers holding a struct page from vmalloc_to_page, as the DRM fbdev emulation's
deferred I/O does (drivers/video/fbdev/core/fb_defio.c) and Piggin's reproducer.

Compound-aware operations (get_page, put_page, vm_insert_page) are correct on a tail;
the raw writes of fields a tail does not own are the bug of 5.18-rc1."""

from __future__ import annotations

from typing import Any

from model.actions.base import Ctx, action, product
from model.actions.page_alloc import get_page, get_page_ok, put_page, put_page_ok
from model.logic import Logic
from model.state import MAPPING_FILE, MAPPING_NULL, OWN_VMALLOC, State, evolve


def _ref_domain(c: Ctx) -> list[dict[str, Any]]:
    return product(ref=range(c.bounds.refs), frame=range(c.bounds.frames))


def holds(s: State, p: dict[str, Any], L: Logic) -> Any:
    return L.and_(s.refs.held[p["ref"]], L.eq(s.refs.frame[p["ref"]], p["frame"]))


def _pre_holds(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    return holds(s, p, L)


def _pre_free_ref(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    return L.and_(L.not_(s.refs.held[p["ref"]]),
                  L.eq(s.areas.owner[p["frame"] // c.bounds.hpage], OWN_VMALLOC))


def _refs(s: State, r: int, L: Logic, **fields: Any) -> State:
    rf = s.refs
    vals = {name: L.store(getattr(rf, name), r, v) for name, v in fields.items()}
    return s.replace(refs=evolve(rf, **vals))


def _vmalloc_to_page_guard(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    f, hp = p["frame"], c.bounds.hpage
    area = f // hp
    return L.and_(
        L.not_(s.refs.held[p["ref"]]),
        L.eq(s.areas.owner[area], OWN_VMALLOC),
        L.lt(f % hp, s.areas.npages[area]),
        get_page_ok(s, f, c, L) if c.flags.driver_get_page else True,
    )


@action("driver", ("ref", "frame"), _ref_domain, _vmalloc_to_page_guard, _pre_free_ref)
def vmalloc_to_page(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """vmalloc_to_page (mm/vmalloc.c) in fb_deferred_io_fault (fb_defio.c): the 4 KiB
    struct page behind a vmalloc address, a tail page inside a compound block, then
    get_page on it (compound-aware: the head's refcount)."""
    r, f = p["ref"], p["frame"]
    if c.flags.driver_get_page:
        s = get_page(s, f, c, L)
    return _refs(s, r, L, held=True, frame=f, counted=c.flags.driver_get_page, mapped=False)


@action("driver", ("ref", "frame"), _ref_domain,
        lambda s, p, c, L: L.and_(holds(s, p, L), s.refs.counted[p["ref"]],
                                  L.not_(s.refs.mapped[p["ref"]]), put_page_ok(s, p["frame"], c, L)),
        pre=_pre_holds)
def put_page_(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """put_page (include/linux/mm.h): the driver drops its reference on compound_head;
    the last reference frees the page, with the free-time checks."""
    s = put_page(s, p["frame"], c, L)
    return _refs(s, p["ref"], L, held=False, counted=False)


@action("driver", ("ref", "frame"), _ref_domain,
        lambda s, p, c, L: L.and_(holds(s, p, L), s.refs.counted[p["ref"]],
                                  L.not_(s.refs.mapped[p["ref"]]), get_page_ok(s, p["frame"], c, L),
                                  L.lt(s.pages.mapcount[p["frame"]], c.bounds.max_ref)), pre=_pre_holds)
def vm_insert_page(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """vm_insert_page (mm/memory.c): map the page into a user VMA: get_page on the head
    and the page's own _mapcount, a field tails legitimately own."""
    f = p["frame"]
    s = get_page(s, f, c, L)
    mc = s.pages.mapcount
    s = s.replace(pages=evolve(s.pages, mapcount=L.store(mc, f, L.add(mc[f], 1))))
    return _refs(s, p["ref"], L, mapped=True)


@action("driver", ("ref", "frame"), _ref_domain,
        lambda s, p, c, L: L.and_(holds(s, p, L), s.refs.mapped[p["ref"]],
                                  L.lt(0, s.pages.mapcount[p["frame"]]),
                                  put_page_ok(s, p["frame"], c, L)),
        pre=_pre_holds)
def zap_page_range(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """zap_page_range (mm/memory.c): unmap the user VMA again: the page's own _mapcount
    down, and put_page on its head."""
    f = p["frame"]
    mc = s.pages.mapcount
    s = s.replace(pages=evolve(s.pages, mapcount=L.store(mc, f, L.sub(mc[f], 1))))
    s = put_page(s, f, c, L)
    return _refs(s, p["ref"], L, mapped=False)


def _raw(field: str, value: Any) -> Any:
    def effect(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
        f = p["frame"]
        tup = getattr(s.pages, field)
        return s.replace(pages=evolve(s.pages, **{field: L.store(tup, f, value)}))

    return effect


def _raw_guard(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> Any:
    return holds(s, p, L)


@action("driver", ("ref", "frame"), _ref_domain, _raw_guard, _pre_holds)
def set_page_mapping(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """`page->mapping = vmf->vma->vm_file->f_mapping` in fb_deferred_io_fault
    (fb_defio.c, before 5.18): a raw write of a field that a tail does not own."""
    return _raw("mapping", MAPPING_FILE)(s, p, c, L)


@action("driver", ("ref", "frame"), _ref_domain, _raw_guard, _pre_holds)
def clear_page_mapping(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """`page->mapping = NULL` in fb_deferred_io_cleanup (fb_defio.c) and Piggin's
    reproducer: on a tail it destroys TAIL_MAPPING ("corrupted mapping in tail page")."""
    return _raw("mapping", MAPPING_NULL)(s, p, c, L)


@action("driver", ("ref", "frame"), _ref_domain, _raw_guard, _pre_holds)
def set_page_index(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """`page->index = vmf->pgoff` in fb_deferred_io_fault: a raw base-page write."""
    return _raw("index", True)(s, p, c, L)


@action("driver", ("ref", "frame"), _ref_domain, _raw_guard, _pre_holds)
def set_page_private(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """set_page_private (include/linux/mm.h): a raw write of page->private."""
    return _raw("private", True)(s, p, c, L)


@action("driver", ("ref", "frame"), _ref_domain, _raw_guard, _pre_holds)
def INIT_LIST_HEAD(s: State, p: dict[str, Any], c: Ctx, L: Logic) -> State:
    """INIT_LIST_HEAD(&page->lru) (Piggin's reproducer; fbdev deferred I/O's pagelist):
    lru.next shares its word with compound_head, so a tail stops being a tail."""
    return _raw("lru", True)(s, p, c, L)
