"""Kernel versions as named sets of feature flags, each flag with the commit that set it.

A profile also declares its history: which invariants must be violated and which must
hold, with page-table allocation failures off and on (domain.md §4). Any flag can be
overridden; a safe profile with one flag flipped is a seeded bug.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

INVARIANT_NAMES = (
    "no_tail_as_base",
    "no_exec_uninit",
    "no_stale_exec",
    "wx",
    "direct_map_integrity",
    "refcount_sanity",
    "pack_bookkeeping",
)


class ProfileError(ValueError):
    """An unknown profile or flag, or a value a flag cannot take: one line for the user."""


@dataclass(frozen=True)
class FlagInfo:
    values: tuple[Any, ...]
    doc: str


FLAG_INFO: dict[str, FlagInfo] = {
    "huge_vmalloc": FlagInfo(
        ("none", "opt_out", "opt_in"),
        "when vmalloc maps with PMD leaves: never; unless VM_NO_HUGE_VMAP "
        "(121e6f3258fe, 5.13; x86 from fac54e2bfb5b, 5.18-rc1); only with VM_ALLOW_HUGE_VMAP "
        "(559089e0a93d, 5.18-rc4)",
    ),
    "huge_backing": FlagInfo(
        ("compound", "split"),
        "huge vmalloc backing: __GFP_COMP compound pages (121e6f3258fe) or split_page'd "
        "order-0 pages (3b8000ae185c, 5.18-rc4)",
    ),
    "module_alloc_no_huge": FlagInfo(
        (False, True), "module_alloc passes VM_NO_HUGE_VMAP (powerpc, 121e6f3258fe)"
    ),
    "module_alloc_prot": FlagInfo(
        ("rwx", "rw"),
        "module_alloc page protection: PAGE_KERNEL_EXEC before 5.2, PAGE_KERNEL from "
        "f2c65fb3221a (5.2)",
    ),
    "lock_order": FlagInfo(
        ("ro_then_x", "x_then_ro"),
        "order of set_memory_ro / set_memory_x when locking text (RO first since "
        "f2c65fb3221a, 5.2)",
    ),
    "flush_reset_perms": FlagInfo(
        (False, True),
        "VM_FLUSH_RESET_PERMS: vfree resets the direct map (868b104d7379, 5.2); before, "
        "owners called set_memory_nx/rw themselves before freeing",
    ),
    "free_resets_perms": FlagInfo(
        (True, False),
        "the owner of special-permission memory restores permissions before freeing it "
        "(by hand or with VM_FLUSH_RESET_PERMS); False is a seeded bug",
    ),
    "cpa_alias": FlagInfo(
        (True, False),
        "x86 change_page_attr also changes the direct-map alias (cpa_process_alias); "
        "powerpc's change_memory_attr does not",
    ),
    "cpa_alias_nx": FlagInfo(
        (False, True),
        "NX changes are applied to the alias too; x86 never does ('No alias checking "
        "for _NX bit modifications'); True is a seeded bug",
    ),
    "driver_get_page": FlagInfo(
        (True, False),
        "fb_deferred_io_fault takes a reference with get_page on the page it got from "
        "vmalloc_to_page; False is a seeded bug",
    ),
    "bpf_prog_pack": FlagInfo(
        (False, True), "JIT images are packed into shared packs (57631054fae6, 5.18-rc1)"
    ),
    "pack_size": FlagInfo(
        ("page", "hpage", "pmd_nodes"),
        "bpf_prog_pack size: PAGE_SIZE (5.18, 5.19), HPAGE_PMD_SIZE (57631054fae6, "
        "5.18-rc1), PMD_SIZE * num_possible_nodes() (ea2babac63d4, 6.0)",
    ),
    "pack_fill": FlagInfo(
        (False, True),
        "a new pack is filled with illegal instructions before RO+X (d88bb5eed04c, 5.19)",
    ),
    "pack_invalidate": FlagInfo(
        (False, True),
        "bpf_prog_pack_free refills a program's chunks with bpf_arch_text_invalidate "
        "(fe736565efb7, 5.19)",
    ),
    "pack_lookup": FlagInfo(
        ("mask", "range"),
        "bpf_prog_pack_free finds the pack by masking the address, or by range "
        "containment (ea2babac63d4, 6.0)",
    ),
    "kvmalloc_huge": FlagInfo(
        (False, True), "kvmalloc opts in to huge vmalloc (9becb6889130, 5.18-rc4)"
    ),
    "hash_huge": FlagInfo(
        (False, True),
        "alloc_large_system_hash opts in to huge vmalloc (f2edd118d02d, 5.18-rc4)",
    ),
}


@dataclass(frozen=True)
class Flags:
    huge_vmalloc: str = "opt_in"
    huge_backing: str = "split"
    module_alloc_no_huge: bool = False
    module_alloc_prot: str = "rw"
    lock_order: str = "ro_then_x"
    flush_reset_perms: bool = True
    free_resets_perms: bool = True
    cpa_alias: bool = True
    cpa_alias_nx: bool = False
    driver_get_page: bool = True
    bpf_prog_pack: bool = True
    pack_size: str = "pmd_nodes"
    pack_fill: bool = True
    pack_invalidate: bool = True
    pack_lookup: str = "range"
    kvmalloc_huge: bool = True
    hash_huge: bool = True

    def with_overrides(self, overrides: dict[str, Any]) -> Flags:
        for name, value in overrides.items():
            if name not in FLAG_INFO:
                raise ProfileError(f"unknown flag {name!r}; known: {', '.join(FLAG_INFO)}")
            if value not in FLAG_INFO[name].values or type(value) is not type(
                FLAG_INFO[name].values[0]
            ):
                allowed = ", ".join(str(v).lower() if isinstance(v, bool) else v
                                    for v in FLAG_INFO[name].values)
                raise ProfileError(f"flag {name} cannot be {value!r}; allowed: {allowed}")
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_flag_value(name: str, text: str) -> Any:
    """`--set name=value` text to the flag's type."""
    if name not in FLAG_INFO:
        raise ProfileError(f"unknown flag {name!r}; known: {', '.join(FLAG_INFO)}")
    if isinstance(FLAG_INFO[name].values[0], bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ProfileError(f"flag {name} takes true or false, got {text!r}")
    return text.strip()


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    flags: Flags
    violated: frozenset[str]  # with page-table allocation failures off
    violated_with_faults: frozenset[str] = frozenset()  # additionally, with them on
    evidence: dict[str, str] = field(default_factory=dict)  # why each declaration holds
    fixed_by: dict[str, str] = field(default_factory=dict)  # invariant -> the fixing commit

    def expected(self, invariant: str, faults: bool) -> str:
        bad = self.violated | (self.violated_with_faults if faults else frozenset())
        return "violated" if invariant in bad else "holds"


# Found by the model as a consequence of the tail-page bug, and checked against the kernel:
_TAIL_REFCOUNT_EVIDENCE = (
    "include/linux/page-flags.h compound_head(): a tail is recognised by bit 0 of the word "
    "that lru.next shares; after INIT_LIST_HEAD(&page->lru) (fb_defio.c, 5.17) get_page / "
    "put_page and the fault path's mapcount act on the tail itself, and the last put_page "
    "(mm/swap.c __put_page) frees that 4 KiB tail to the buddy allocator while vmalloc "
    "still maps it: a use after free that follows the memmap corruption"
)

# Declared with failures on, found by the model and checked against the kernel source:
# set_memory_ro on a 4 KiB vmalloc page changes the PTE, then cpa_process_alias must split
# the 2 MiB direct-map leaf; when that page-table allocation fails the primary is already
# RO but the alias stays RW, and the callers below ignore the error, then set_memory_x.
_WX_SPLIT_EVIDENCE = (
    "arch/x86/mm/pat/set_memory.c __change_page_attr_set_clr: the primary PTE is changed "
    "before cpa_process_alias, whose split_large_page can return -ENOMEM; "
    "include/linux/filter.h bpf_jit_binary_lock_ro (5.2-5.19) and kernel/bpf/core.c "
    "alloc_new_pack (5.18-6.0) ignore set_memory_ro's return, then set_memory_x: the frame "
    "is executable through vmalloc while writable through the direct map"
)

_V52 = Flags(
    huge_vmalloc="none",
    huge_backing="compound",
    bpf_prog_pack=False,
    pack_size="page",
    pack_fill=False,
    pack_invalidate=False,
    pack_lookup="mask",
    kvmalloc_huge=False,
    hash_huge=False,
)
_V518RC1 = dataclasses.replace(
    _V52, huge_vmalloc="opt_out", bpf_prog_pack=True, pack_size="hpage"
)
_V518 = dataclasses.replace(
    _V518RC1, huge_vmalloc="opt_in", huge_backing="split", pack_size="page",
    kvmalloc_huge=True, hash_huge=True,
)
_V518Y = dataclasses.replace(_V518, pack_fill=True)
_V519 = dataclasses.replace(_V518Y, pack_invalidate=True)
_V60 = dataclasses.replace(_V519, pack_size="pmd_nodes", pack_lookup="range")

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "v5.1",
            "module_alloc maps PAGE_KERNEL_EXEC: writable and executable at once",
            dataclasses.replace(_V52, module_alloc_prot="rwx", flush_reset_perms=False),
            frozenset({"wx"}),
            frozenset(),
            fixed_by={"wx": "f2c65fb3221a (5.2) x86/modules: Avoid breaking W^X while loading modules"},
        ),
        Profile(
            "v5.2",
            "W^X module loading, VM_FLUSH_RESET_PERMS, per-program BPF JIT images",
            _V52,
            frozenset(),
            frozenset({"wx"}),
            evidence={"wx": _WX_SPLIT_EVIDENCE},
        ),
        Profile(
            "v5.13-powerpc",
            "huge vmalloc by default (VM_NO_HUGE_VMAP to opt out), compound backing; "
            "module_alloc opts out; no direct-map alias processing",
            dataclasses.replace(
                _V52, huge_vmalloc="opt_out", module_alloc_no_huge=True, cpa_alias=False,
                module_alloc_prot="rwx",
            ),
            frozenset({"no_tail_as_base", "wx", "refcount_sanity"}),
            evidence={
                "refcount_sanity": _TAIL_REFCOUNT_EVIDENCE,
                "wx": "arch/powerpc/kernel/module.c module_alloc (5.13, 121e6f3258fe series): "
                "PAGE_KERNEL_EXEC with VM_NO_HUGE_VMAP | VM_FLUSH_RESET_PERMS; and "
                "arch/powerpc/mm/pageattr.c change_memory_attr walks only the given address, "
                "so the linear-map alias of module text stays RW. domain.md declares only "
                "no_tail_as_base for this profile; the kernel wins (docs/kernel-notes.md Q8)",
            },
            fixed_by={"no_tail_as_base": "3b8000ae185c / 559089e0a93d (5.18-rc4)",
                      "refcount_sanity": "3b8000ae185c / 559089e0a93d (5.18-rc4)"},
        ),
        Profile(
            "v5.18-rc1",
            "x86 huge vmalloc by default, compound backing, 2 MiB bpf_prog_packs made RO+X unfilled",
            _V518RC1,
            frozenset({"no_tail_as_base", "no_exec_uninit", "no_stale_exec", "refcount_sanity"}),
            frozenset({"direct_map_integrity", "wx"}),
            evidence={
                "refcount_sanity": _TAIL_REFCOUNT_EVIDENCE,
                "direct_map_integrity": "mm/vmalloc.c vm_remove_mappings / set_area_direct_map "
                "(5.18-rc1): set_direct_map_invalid_noflush / _default_noflush on each 4 KiB "
                "page of a huge alias must split the RO direct-map leaf; the failure is ignored "
                "and the page is freed with special permissions (Rick Edgecombe's mail)",
                "wx": _WX_SPLIT_EVIDENCE,
            },
            fixed_by={
                "no_tail_as_base": "559089e0a93d (opt-in huge) and 3b8000ae185c (split backing), 5.18-rc4",
                "no_exec_uninit": "d88bb5eed04c (5.19) bpf: Fill new bpf_prog_pack with illegal instructions",
                "no_stale_exec": "fe736565efb7 (5.19) bpf_arch_text_invalidate for bpf_prog_pack",
                "direct_map_integrity": "559089e0a93d (5.18-rc4): packs back on 4 KiB pages",
                "refcount_sanity": "559089e0a93d and 3b8000ae185c (5.18-rc4)",
            },
        ),
        Profile(
            "v5.18",
            "huge vmalloc opt-in, split backing, 4 KiB packs still made RO+X unfilled",
            _V518,
            frozenset({"no_exec_uninit", "no_stale_exec"}),
            frozenset({"wx"}),
            evidence={"wx": _WX_SPLIT_EVIDENCE},
            fixed_by={
                "no_exec_uninit": "d88bb5eed04c (5.19, backported to 5.18.y)",
                "no_stale_exec": "fe736565efb7 (5.19) bpf_arch_text_invalidate",
            },
        ),
        Profile(
            "v5.18.y",
            "5.18 plus the backported fill of new packs",
            _V518Y,
            frozenset({"no_stale_exec"}),
            frozenset({"wx"}),
            evidence={"wx": _WX_SPLIT_EVIDENCE},
            fixed_by={"no_stale_exec": "fe736565efb7 (5.19) bpf_arch_text_invalidate"},
        ),
        Profile(
            "v5.19",
            "packs filled on creation and refilled when a program is freed",
            _V519,
            frozenset(),
            frozenset({"wx"}),
            evidence={"wx": _WX_SPLIT_EVIDENCE},
        ),
        Profile(
            "v6.0",
            "packs of PMD_SIZE * num_possible_nodes(), programs' packs found by range",
            _V60,
            frozenset(),
            frozenset({"wx"}),
            evidence={"wx": _WX_SPLIT_EVIDENCE},
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


@dataclass(frozen=True)
class SeededBug:
    """A safe profile with flags flipped, and the invariant that must catch it."""

    name: str
    base: str
    overrides: dict[str, Any]
    catches: str
    story: str


SEEDED_BUGS: tuple[SeededBug, ...] = (
    SeededBug("exec-module-alloc", "v5.2", {"module_alloc_prot": "rwx"}, "wx",
              "module_alloc back to PAGE_KERNEL_EXEC, as before f2c65fb3221a"),
    SeededBug("x-before-ro", "v5.2", {"lock_order": "x_then_ro"}, "wx",
              "set_memory_x before set_memory_ro: the window f2c65fb3221a closed"),
    SeededBug("no-alias", "v5.19", {"cpa_alias": False}, "wx",
              "change_page_attr forgets the direct-map alias: code stays writable there"),
    SeededBug("huge-compound-again", "v5.19",
              {"huge_vmalloc": "opt_out", "huge_backing": "compound"}, "no_tail_as_base",
              "both 5.18-rc4 fixes reverted: fbdev's vmalloc is compound again"),
    SeededBug("unfilled-pack", "v5.19", {"pack_fill": False}, "no_exec_uninit",
              "d88bb5eed04c reverted: a new pack is RO+X before anything is written"),
    SeededBug("no-invalidate", "v5.19", {"pack_invalidate": False}, "no_stale_exec",
              "fe736565efb7 reverted: a freed program's code stays executable"),
    SeededBug("alias-nx", "v5.19", {"cpa_alias_nx": True}, "direct_map_integrity",
              "set_memory_x also makes the direct-map alias executable"),
    SeededBug("no-reset-on-free", "v5.2", {"free_resets_perms": False}, "direct_map_integrity",
              "RO pages go back to the page allocator still RO in the direct map"),
    SeededBug("defio-no-get-page", "v5.19", {"driver_get_page": False}, "refcount_sanity",
              "fbdev deferred I/O keeps a page pointer without a reference: use after vfree"),
    SeededBug("lookup-by-mask", "v6.0", {"pack_lookup": "mask"}, "pack_bookkeeping",
              "ea2babac63d4 reverted: an unaligned pack is not found when a program is freed"),
)
