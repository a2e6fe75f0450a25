"""The state: frozen dataclasses of tuples, indexed by frame, area, program or ref.

Structure of arrays, so that an effect writes one field of one element with
`L.store(tup, i, v)` and every untouched field keeps its identity: the symbolic engine
builds a field's next value only from the action instances that really write it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from model.bounds import Bounds

# struct page, as the page allocator made it (page-flags.h: PG_head, PageTail)
PG_FREE, PG_BASE, PG_HEAD, PG_TAIL = 0, 1, 2, 3
PAGE_KINDS = ("free", "base", "head", "tail")

# page->mapping: NULL, TAIL_MAPPING (the poison tails carry), or a driver's address_space
MAPPING_NULL, TAIL_MAPPING, MAPPING_FILE = 0, 1, 2
MAPPINGS = ("NULL", "TAIL_MAPPING", "file")

# what a content cell holds, from its current owner's point of view
UNINIT, ZERO, CODE, TRAP, DATA = 0, 1, 2, 3, 4
CONTENTS = ("uninit", "zero", "code", "trap", "data")

# why the free-time checks reported a page (mm/page_alloc.c, 5.17: page_bad_reason and
# free_tail_pages_check; each is printed as "BUG: Bad page state ... <reason>")
(
    BAD_NONE,
    BAD_MAPCOUNT,
    BAD_MAPPING,
    BAD_REFCOUNT,
    BAD_TAIL_MAPPING,
    BAD_NOT_TAIL,
    BAD_COMPOUND_HEAD,
    BAD_REF_ZERO,
) = range(8)
BAD_REASONS = (
    "none",
    "nonzero mapcount",
    "non-NULL mapping",
    "nonzero _refcount",
    "corrupted mapping in tail page",
    "PageTail not set",
    "compound_head not consistent",
    "VM_BUG_ON_PAGE(page_ref_count(page) == 0)",
)
# reported by free_tail_pages_check: a tail that stopped looking like one
BAD_TAIL_REASONS = (BAD_TAIL_MAPPING, BAD_NOT_TAIL, BAD_COMPOUND_HEAD)

# who owns a vm area slot
(
    OWN_NONE,
    OWN_VMALLOC,
    OWN_KVMALLOC,
    OWN_HASH,
    OWN_MODULE,
    OWN_BPF_JIT,
    OWN_PACK,
    OWN_TRAMPOLINE,
    OWN_DISPATCHER,
    OWN_KPROBES,
    OWN_FTRACE,
    OWN_STRUCT_OPS,
    OWN_ROX_CACHE,
) = range(13)
OWNERS = ("none", "vmalloc", "kvmalloc", "hash", "module", "bpf_jit", "pack", "bpf_trampoline",
          "bpf_dispatcher", "kprobes", "ftrace", "bpf_struct_ops", "execmem_cache")

# a module's writable copy of its ROX text (6.13-rc1, kernel/module/main.c: mem->rw_copy):
# none, live (relocations are written into it), or freed by post_relocation while
# module_writable_address still computes addresses from it
RWC_NONE, RWC_LIVE, RWC_FREED = 0, 1, 2
RW_COPIES = ("none", "live", "freed")

# how far a module or JIT image has got through the W^X protocol
PH_ALLOCATED, PH_WRITTEN, PH_HALF, PH_LOCKED = 0, 1, 2, 3
PHASES = ("allocated", "written", "half_locked", "locked")

# a BPF program slot
PROG_NONE, PROG_ALLOCATED, PROG_LIVE = 0, 1, 2
PROG_STATES = ("none", "allocated", "live")


@dataclass(frozen=True)
class Pages:
    """The memmap (one struct page per frame) and what each frame holds."""

    kind: tuple[int, ...]
    refcount: tuple[int, ...]  # _refcount; a tail's must stay 0
    mapcount: tuple[int, ...]  # _mapcount + 1 (tails own theirs)
    mapping: tuple[int, ...]
    lru: tuple[bool, ...]  # lru written as a list head: on a tail it destroys compound_head
    index: tuple[bool, ...]  # ->index written as on a base page
    private: tuple[bool, ...]  # ->private written as on a base page
    content: tuple[int, ...]  # frames * cells content cells
    # per frame: why the free-time checks reported it ("BUG: Bad page state"), BAD_NONE if
    # they never did; a reported page is leaked, never returned to the buddy allocator
    bad: tuple[int, ...]


@dataclass(frozen=True)
class DirectMap:
    """The kernel's linear map of all memory: one alias of every frame."""

    present: tuple[bool, ...]
    w: tuple[bool, ...]
    x: tuple[bool, ...]
    split: tuple[bool, ...]  # per leaf (hpage frames): split to 4 KiB PTEs
    # direct-map splits so far, the figure bpf_prog_pack existed to lower; it saturates at
    # the number of leaves (only collapse, 6.15, could take it further)
    splits: int


@dataclass(frozen=True)
class Areas:
    """vm_struct slots and their vmalloc page tables."""

    owner: tuple[int, ...]
    npages: tuple[int, ...]  # 1..hpage
    huge: tuple[bool, ...]  # mapped with PMD leaves
    vsplit: tuple[bool, ...]  # that huge mapping has since been split to PTEs
    flush_reset: tuple[bool, ...]  # VM_FLUSH_RESET_PERMS
    usermap: tuple[bool, ...]  # VM_USERMAP: remap_vmalloc_range may map it to user space
    aligned: tuple[bool, ...]  # base aligned to the area's own size
    phase: tuple[int, ...]  # W^X progress of a module or JIT image
    pte_w: tuple[bool, ...]  # per frame: the vmalloc PTE of that frame is writable
    pte_x: tuple[bool, ...]  # per frame: ... executable
    # per frame: a TLB entry of a lazily unmapped vmalloc alias still grants execute. vfree
    # clears the PTEs at once but flushes the TLB lazily, while the pages go back to the
    # page allocator at once (868b104d7379's series: "an executable permissioned TLB entry
    # can remain to a freed page"); purge_vmap_area_lazy or vm_unmap_aliases drops it
    tlb_x: tuple[bool, ...]
    bitmap: tuple[bool, ...]  # per area * chunk: bpf_prog_pack bitmap
    # per area: a huge page of the execmem ROX cache (6.13-rc1 on); freeing its user gives
    # it back to the cache (owner execmem_cache), not to vfree
    cached: tuple[bool, ...]
    rw_copy: tuple[int, ...]  # per area: RWC_*


@dataclass(frozen=True)
class Progs:
    """JIT-compiled BPF programs."""

    state: tuple[int, ...]
    area: tuple[int, ...]  # pack (or JIT image) area slot
    chunk: tuple[int, ...]  # first chunk in the pack


@dataclass(frozen=True)
class Refs:
    """struct page pointers a driver got from vmalloc_to_page."""

    held: tuple[bool, ...]
    frame: tuple[int, ...]
    counted: tuple[bool, ...]  # the driver took a reference with get_page
    mapped: tuple[bool, ...]  # the driver mapped it into user space with vm_insert_page


@dataclass(frozen=True)
class Oops:
    """Accesses the kernel would die on, recorded when they happen."""

    # something read or wrote a frame through a direct-map alias that was not present
    # (/proc/kcore's vread_iter on 6.13-rc1's ROX cache, 925f42645118)
    invalid_alias: bool
    # something wrote through a writable alias after it was retired (livepatch through
    # module_writable_address after post_relocation freed rw_copy, 4bcf29741145)
    stale_alias: bool


@dataclass(frozen=True)
class State:
    pages: Pages
    dmap: DirectMap
    areas: Areas
    progs: Progs
    refs: Refs
    oops: Oops

    def replace(self, **changes: Any) -> State:
        return evolve(self, **changes)


def evolve(obj: Any, **changes: Any) -> Any:
    """dataclasses.replace without re-running __init__: effects call this on every step,
    and the fields of these frozen dataclasses need no validation."""
    new = object.__new__(type(obj))
    d = new.__dict__
    d.update(obj.__dict__)
    d.update(changes)
    return new


def initial_state(b: Bounds) -> State:
    """Boot: every frame free and mapped RW+NX by huge direct-map leaves; nothing allocated."""
    n = b.frames
    return State(
        pages=Pages(
            kind=(PG_FREE,) * n,
            refcount=(0,) * n,
            mapcount=(0,) * n,
            mapping=(MAPPING_NULL,) * n,
            lru=(False,) * n,
            index=(False,) * n,
            private=(False,) * n,
            content=(UNINIT,) * (n * b.cells),
            bad=(BAD_NONE,) * n,
        ),
        dmap=DirectMap(
            present=(True,) * n,
            w=(True,) * n,
            x=(False,) * n,
            split=(False,) * b.areas,
            splits=0,
        ),
        areas=Areas(
            owner=(OWN_NONE,) * b.areas,
            npages=(0,) * b.areas,
            huge=(False,) * b.areas,
            vsplit=(False,) * b.areas,
            flush_reset=(False,) * b.areas,
            usermap=(False,) * b.areas,
            aligned=(False,) * b.areas,
            phase=(PH_ALLOCATED,) * b.areas,
            pte_w=(False,) * n,
            pte_x=(False,) * n,
            tlb_x=(False,) * n,
            bitmap=(False,) * (b.areas * b.chunks),
            cached=(False,) * b.areas,
            rw_copy=(RWC_NONE,) * b.areas,
        ),
        progs=Progs(
            state=(PROG_NONE,) * b.progs,
            area=(0,) * b.progs,
            chunk=(0,) * b.progs,
        ),
        refs=Refs(
            held=(False,) * b.refs,
            frame=(0,) * b.refs,
            counted=(False,) * b.refs,
            mapped=(False,) * b.refs,
        ),
        oops=Oops(invalid_alias=False, stale_alias=False),
    )


def leaves(s: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every scalar of a state with its dotted path, in a fixed order (ITF vars, z3 names)."""
    out: list[tuple[str, Any]] = []
    if dataclasses.is_dataclass(s) and not isinstance(s, type):
        for f in dataclasses.fields(s):
            out += leaves(getattr(s, f.name), f"{prefix}{f.name}.")
        return out
    if isinstance(s, tuple):
        for i, x in enumerate(s):
            out += leaves(x, f"{prefix}{i}.")
        return out
    return [(prefix.rstrip("."), s)]


def rebuild(template: Any, values: list[Any]) -> Any:
    """The inverse of `leaves`: a state of `template`'s shape holding `values` in order."""
    it = iter(values)

    def go(t: Any) -> Any:
        if dataclasses.is_dataclass(t) and not isinstance(t, type):
            return evolve(t, **{f.name: go(getattr(t, f.name)) for f in dataclasses.fields(t)})
        if isinstance(t, tuple):
            return tuple(go(x) for x in t)
        return next(it)

    out = go(template)
    if next(it, None) is not None:
        raise ValueError("more values than the template has leaves")
    return out
