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
    "no_leak",
    "no_invalid_alias",
    "no_stale_alias",
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
        (False, True),
        "module_alloc passes VM_NO_HUGE_VMAP (powerpc, 8abddd968a30 \"powerpc/64s/radix: "
        "Enable huge vmalloc mappings\", 5.13)",
    ),
    "set_memory": FlagInfo(
        (True, False),
        "the arch implements set_memory_* (ARCH_HAS_SET_MEMORY; x86 always, powerpc from "
        "1f9ad21c3b38, 5.14); without it set_memory_ro/x are no-op stubs and module and BPF "
        "text stays as module_alloc mapped it",
    ),
    "vfree_each_page": FlagInfo(
        (True, False),
        "vfree puts every page of split huge backing (__vunmap's loop over area->pages after "
        "3b8000ae185c, 5.18-rc4); False, a seeded bug, frees only each block's first page",
    ),
    "debug_vm": FlagInfo(
        (True, False),
        "CONFIG_DEBUG_VM: free_tail_pages_check runs when a compound page is freed and "
        "VM_BUG_ON_PAGE fires on a get_page/put_page of a zero refcount (the 2022 reports "
        "came from such kernels); without it only check_free_page runs",
    ),
    "module_alloc_prot": FlagInfo(
        ("rwx", "rw"),
        "module_alloc page protection: PAGE_KERNEL_EXEC before 5.2, PAGE_KERNEL from "
        "f2c65fb3221a (5.2)",
    ),
    "lock_order": FlagInfo(
        ("ro_then_x", "x_then_ro", "rox"),
        "how the module loader locks text: set_memory_ro then set_memory_x (RO first since "
        "f2c65fb3221a, 5.2), or one set_memory_rox (module_enable_text_rox, "
        "kernel/module/strict_rwx.c, as read in 6.10)",
    ),
    "flush_reset_perms": FlagInfo(
        (False, True),
        "VM_FLUSH_RESET_PERMS: vfree resets the direct map (868b104d7379, 5.2); before, "
        "owners called set_memory_nx/rw themselves before freeing",
    ),
    "flush_on_reset": FlagInfo(
        (True, False),
        "vm_remove_mappings flushes the TLB (_vm_unmap_aliases) between making the direct "
        "map invalid and resetting it (868b104d7379, 5.2), so no executable TLB entry of the "
        "vmalloc alias outlives the free; False is a seeded bug",
    ),
    "free_resets_perms": FlagInfo(
        (True, False),
        "the owner of special-permission memory restores permissions before freeing it "
        "(by hand or with VM_FLUSH_RESET_PERMS); False is a seeded bug",
    ),
    "cpa_alias": FlagInfo(
        (True, False),
        "x86 change_page_attr also changes the direct-map alias (cpa_process_alias) and "
        "first flushes every lazily freed vmap area (vm_unmap_aliases); powerpc's "
        "change_memory_attr does neither",
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
        "bpf_prog_pack size: PAGE_SIZE (5.18, 5.19), BPF_HPAGE_SIZE * num_online_nodes() "
        "found by BPF_HPAGE_MASK (57631054fae6, ef078600eec2, 5.18-rc1), PMD_SIZE * "
        "num_possible_nodes() (ea2babac63d4, 6.0)",
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
    "oversized_flush_reset": FlagInfo(
        (True, False),
        "bpf_prog_pack_alloc's branch for programs larger than the pack calls "
        "set_vm_flush_reset_perms before set_memory_ro (57631054fae6, 5.18-rc1); False is a "
        "seeded bug",
    ),
    "pack_lookup": FlagInfo(
        ("mask", "range"),
        "bpf_prog_pack_free finds the pack by masking the address, or by range "
        "containment (ea2babac63d4, 6.0)",
    ),
    "bpf_trampoline": FlagInfo(
        ("none", "rwx", "ro_x", "pack"),
        "BPF trampolines (fec56f5890d9, 5.5) and the dispatcher (5.6): a module_alloc'ed page "
        "made executable while writable (\"Keep image as writeable\"), written after; "
        "ro_x: written, then set_memory_ro and set_memory_x (5b0d1c7bd572, 6.1), the "
        "dispatcher in a bpf_prog_pack chunk (19c02415da23, 6.1); pack: x86 trampolines are "
        "bpf_prog_pack chunks written through a RW buffer and bpf_arch_text_copy "
        "(3ba026fca878, 6.8)",
    ),
    "set_memory_rox": FlagInfo(
        (False, True),
        "BPF (bpf_jit_binary_lock_ro, alloc_new_pack, trampolines, struct_ops), kprobes and "
        "ftrace lock text with one set_memory_rox call, one CPA pass that clears _PAGE_RW and "
        "_PAGE_NX, the alias keeping NX (d48567c9a0d1, 60463628c9e0, d597416683d5, 6.2); "
        "the module loader keeps set_memory_ro then set_memory_x",
    ),
    "set_memory_errors": FlagInfo(
        ("ignored", "checked"),
        "what callers do when set_memory_* fails: ignore it (5.1 to 6.8); checked: the module "
        "loader aborts the load (d1909c022173, 6.9) and BPF fails the load or attach and frees "
        "the memory (7d2cc63eca0c, e60adf513275, c733239f8f53, 6.10); kprobes and ftrace still "
        "ignore it",
    ),
    "execmem": FlagInfo(
        ("none", "vmalloc", "rox_cache"),
        "how executable memory is allocated: module_alloc (to 6.9); execmem_alloc(type) "
        "(12af2b83d0b1, 6.10), which maps PAGE_KERNEL and sets VM_FLUSH_RESET_PERMS for "
        "every user itself; rox_cache: module text from the execmem cache of huge ROX pages "
        "filled with INT3 (2e45474ab14f, 0c133b1e78cd, 5185e7f9f3bd, 6.13-rc1; off on x86 in "
        "6.13 by a9bbe3413331, back in 6.15 by 64f6a4e10c05)",
    ),
    "rox_cache_direct_map": FlagInfo(
        ("kept", "invalid"),
        "whether execmem_cache_populate removes the cache's pages from the direct map "
        "(6.13-rc1) or keeps them (925f42645118, 6.15: /proc/kcore reads module memory "
        "through vread_iter)",
    ),
    "rox_text_write": FlagInfo(
        ("rw_copy", "rw_copy_formed", "temp_rw"),
        "how the module loader writes text in the ROX cache: a vmalloc'ed rw_copy, freed by "
        "post_relocation while module_writable_address keeps using it (0c133b1e78cd, "
        "6.13-rc1); the same with module_writable_address returning loc once the module is "
        "formed (4bcf29741145, 6.13); execmem_make_temp_rw on the text itself, then "
        "execmem_restore_rox (05e555b81726, c287c0723329, 6.15)",
    ),
    "cpa_collapse": FlagInfo(
        (False, True),
        "set_memory_rox collapses split large pages whose 512 entries have the same "
        "permissions back into one leaf (CPA_COLLAPSE, 41d88484c71c, 6.15)",
    ),
    "collapse_same_flags": FlagInfo(
        (True, False),
        "collapse_pmd_page collapses only when all 512 PTEs have the same flags "
        "(41d88484c71c); False, a seeded bug, collapses a split huge mapping whatever its PTEs "
        "say",
    ),
    "rox_cache_free": FlagInfo(
        ("text_poke_fill", "rw_fill_rox"),
        "how execmem_cache_free refills a freed allocation with INT3: through text_poke "
        "(6.13-rc1 to 6.16), or execmem_force_rw, fill, execmem_restore_rox (187fd8521dd8, "
        "6.17)",
    ),
    "rox_cache_users": FlagInfo(
        ("module", "module_kprobes_ftrace"),
        "which x86 users take memory from the ROX cache: module text (6.13-rc1, 6.15); also "
        "kprobes instruction pages and ftrace trampolines (5d79c2be5081 and its series, "
        "6.17)",
    ),
    "bpf_struct_ops": FlagInfo(
        ("none", "ro_x", "ro_x_no_flush_reset", "pack"),
        "BPF struct_ops maps (85d33df357b6, 5.6 to 6.0): trampolines written into a "
        "module_alloc'ed page while RW+NX, then set_memory_ro and set_memory_x; on a reg() "
        "error set_memory_nx, set_memory_rw; ro_x_no_flush_reset (a seeded bug) leaves out "
        "bpf_struct_ops_map_alloc's set_vm_flush_reset_perms; pack: images from "
        "arch_alloc_bpf_trampoline, bpf_prog_pack chunks on x86 (82583daa2efc, 6.8), which "
        "the program slots stand for",
    ),
    "kprobes_insn": FlagInfo(
        ("none", "rwx_ro", "ro_x"),
        "kprobes instruction pages: RW+X from module_alloc then set_memory_ro (5.1.0); "
        "VM_FLUSH_RESET_PERMS, set_memory_ro, set_memory_x before any slot is written "
        "(5.2 to 6.0, 7298e24f9042)",
    ),
    "ftrace_tramp": FlagInfo(
        ("none", "rwx", "x_while_w", "ro_x", "boot_x_first", "rox"),
        "ftrace trampolines: RW+X (5.1); set_memory_x while writable (5.2 to 5.5); written, RO, "
        "then X (768ae4406a5c, 5.6); and from 59566b0b622e (5.7 to 6.1) those created at boot "
        "get X without RO until set_ftrace_ops_ro; rox: written, then set_memory_rox, at boot "
        "too (eb7d389d5b2b, 6.2: \"cures a W+X case during boot\")",
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
    set_memory: bool = True
    debug_vm: bool = True
    vfree_each_page: bool = True
    module_alloc_prot: str = "rw"
    lock_order: str = "ro_then_x"
    flush_reset_perms: bool = True
    flush_on_reset: bool = True
    free_resets_perms: bool = True
    cpa_alias: bool = True
    cpa_alias_nx: bool = False
    driver_get_page: bool = True
    bpf_prog_pack: bool = True
    pack_size: str = "pmd_nodes"
    pack_fill: bool = True
    pack_invalidate: bool = True
    oversized_flush_reset: bool = True
    pack_lookup: str = "range"
    kvmalloc_huge: bool = True
    hash_huge: bool = True
    bpf_trampoline: str = "rwx"
    bpf_struct_ops: str = "ro_x"
    kprobes_insn: str = "ro_x"
    ftrace_tramp: str = "boot_x_first"
    set_memory_rox: bool = False
    set_memory_errors: str = "ignored"
    execmem: str = "none"
    rox_cache_direct_map: str = "kept"
    rox_text_write: str = "temp_rw"
    cpa_collapse: bool = False
    collapse_same_flags: bool = True
    rox_cache_free: str = "text_poke_fill"
    rox_cache_users: str = "module"

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
        # each value as the one object FLAG_INFO lists (a `--set` string is a new object):
        # a flag is then one of a few known objects wherever it came from
        canonical = {name: next(v for v in FLAG_INFO[name].values if v == value)
                     for name, value in overrides.items()}
        return dataclasses.replace(self, **canonical)

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
    # additionally, with two NUMA nodes (`--bounds numa`: nodes=2), failures off
    violated_with_nodes: frozenset[str] = frozenset()
    evidence: dict[str, str] = field(default_factory=dict)  # why each declaration holds
    fixed_by: dict[str, str] = field(default_factory=dict)  # invariant -> the fixing commit

    def expected(self, invariant: str, faults: bool, nodes: int = 1) -> str:
        bad = (self.violated | (self.violated_with_faults if faults else frozenset())
               | (self.violated_with_nodes if nodes > 1 else frozenset()))
        return "violated" if invariant in bad else "holds"


# Found by the model as a consequence of the tail-page bug, and checked against the kernel:
_TAIL_REFCOUNT_EVIDENCE = (
    "include/linux/page-flags.h compound_head(): a tail is recognised by bit 0 of the word "
    "that lru.next shares; after INIT_LIST_HEAD(&page->lru) (fb_deferred_io_fault, fb_defio.c, "
    "5.18-rc1, 105a940416fc) get_page / put_page act on the tail itself, whose _refcount is 0. "
    "The fault handler's order: get_page on the head, the raw ->lru write, the PTE keeps that "
    "reference (finish_fault), and munmap's put_page lands on the detached tail: with "
    "CONFIG_DEBUG_VM VM_BUG_ON_PAGE in put_page_testzero (include/linux/mm.h), without it an "
    "underflow, and the head's reference leaks"
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

# Found by the model once the other users of module_alloc'ed text were modelled, and
# checked against each version's source (docs/users-by-version.md has the quotes):
_USERS_WX_EVIDENCE = (
    "arch/x86/net/bpf_jit_comp.c / kernel/bpf/trampoline.c bpf_jit_alloc_exec_page (5.5 to "
    "6.0): module_alloc, set_vm_flush_reset_perms, then \"Keep image as writeable. The "
    "alternative is to keep flipping ro/rw every time new program is attached or detached.\" "
    "set_memory_x((long)image, 1): BPF trampolines and the dispatcher are RW+X for life; "
    "arch/x86/kernel/ftrace.c create_trampoline (5.7 to 6.0): while SYSTEM_BOOTING "
    "set_memory_ro is skipped but set_memory_x runs, and text_poke_early memcpy()s into it"
)
_V52_WX_EVIDENCE = (
    "arch/x86/kernel/ftrace.c create_trampoline (5.2 to 5.5): set_vm_flush_reset_perms, then "
    "set_memory_x on the still writable page (\"The page is still writable, which is a "
    "security hazard, but anyhow ftrace breaks W^X completely.\")"
)
_KPROBES_EVIDENCE = (
    "arch/x86/kernel/kprobes/core.c alloc_insn_page (5.2 to 6.0): page = module_alloc(PAGE_SIZE) "
    "(GFP_KERNEL, not zeroed); set_vm_flush_reset_perms; set_memory_ro; \"TODO: ... ensure "
    "that the page was not maliciously altered and it is still zeroed.\" set_memory_x: "
    "executable before any slot is written; the same holds of the unwritten rest of a BPF "
    "trampoline or ftrace trampoline page (5.1.0: module_alloc is PAGE_KERNEL_EXEC)"
)

# Found by the model once lazy TLB flushing was modelled, and checked against the kernel:
_STALE_TLB_EVIDENCE = (
    "kernel/module.c free_module (5.1): disable_ro_nx(&mod->core_layout) makes the text RW "
    "again with set_memory_rw, leaving it executable, then module_memfree -> vfree -> "
    "__vunmap (mm/vmalloc.c 5.1): remove_vm_area clears the PTEs and queues the area for a "
    "lazy TLB flush, and the pages are __free_pages'd at once; the 5.2 series' cover letter: "
    "\"an executable permissioned TLB entry can remain to a freed page ... The root of this "
    "behavior is vfree lazily flushing the TLB, but not lazily freeing the underlying pages\""
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
    bpf_trampoline="none",
    bpf_struct_ops="none",
    ftrace_tramp="x_while_w",
)
_V518RC1 = dataclasses.replace(
    _V52, huge_vmalloc="opt_out", bpf_prog_pack=True, pack_size="hpage", bpf_trampoline="rwx",
    bpf_struct_ops="ro_x", ftrace_tramp="boot_x_first",
)
_V518 = dataclasses.replace(
    _V518RC1, huge_vmalloc="opt_in", huge_backing="split", pack_size="page",
    kvmalloc_huge=True, hash_huge=True,
)
_V518Y = dataclasses.replace(_V518, pack_fill=True)
_V519 = dataclasses.replace(_V518Y, pack_invalidate=True)
_V60 = dataclasses.replace(_V519, pack_size="pmd_nodes", pack_lookup="range")

# ---- the kernels since 6.0 (docs/notes-6x-bpf.md, docs/notes-6x-execmem.md quote the code)
_FTRACE_BOOT_EVIDENCE = (
    "arch/x86/kernel/ftrace.c create_trampoline (6.1, as read in a 6.1-rc7 tree): \"if "
    "(likely(system_state != SYSTEM_BOOTING)) set_memory_ro(...); set_memory_x(...);\": a "
    "trampoline created at boot is RW+X until set_ftrace_ops_ro; BPF trampolines are W^X "
    "from 5b0d1c7bd572"
)
_FTRACE_ROX_FIX = ("eb7d389d5b2b (6.2) \"x86/ftrace: Remove SYSTEM_BOOTING exceptions\": "
                   "set_memory_rox at boot too, \"cures a W+X case during boot\"")
_UNWRITTEN_REST_EVIDENCE = (
    "alloc_insn_page (arch/x86/kernel/kprobes/core.c, 6.1 to 6.16): module_alloc / "
    "execmem_alloc(EXECMEM_KPROBES) (GFP_KERNEL, not zeroed), then set_memory_ro and "
    "set_memory_x (set_memory_rox from 6.2) before any slot is written; the same of the "
    "unwritten rest of an ftrace trampoline page (create_trampoline) and, 6.1 to 6.7, of a "
    "BPF trampoline page (bpf_tramp_image_alloc: bpf_jit_alloc_exec, written in part, then "
    "set_memory_ro/x)"
)
_UNWRITTEN_REST_FIX = ("kprobes and ftrace: 5d79c2be5081's series (6.17) takes their pages from "
                       "the ROX cache, filled with INT3; BPF trampolines: 3ba026fca878 (6.8), in "
                       "packs")
_ROX_SPLIT_EVIDENCE = (
    "set_memory_rox (60463628c9e0, 6.2) changes the vmalloc PTE, then cpa_process_alias must "
    "split the direct-map leaf to clear _PAGE_RW; a failed split returns -ENOMEM with the "
    "primary already RO+X and the alias still RW, and bpf_jit_binary_lock_ro, alloc_new_pack, "
    "alloc_insn_page and create_trampoline (6.2 to 6.9) ignore the return"
)
_ROX_SPLIT_610_EVIDENCE = (
    "BPF checks set_memory_rox from c733239f8f53 / e60adf513275 (6.10) and the module loader "
    "from d1909c022173 (6.9), but alloc_insn_page (arch/x86/kernel/kprobes/core.c) and "
    "create_trampoline (arch/x86/kernel/ftrace.c) in 6.10 still ignore it: after a failed "
    "alias split the page is RO+X through vmalloc and RW through the direct map"
)
_ROX_ERRORS_FIX = ("BPF: c733239f8f53, e60adf513275 (6.10); kprobes and ftrace: not fixed by "
                   "6.10 (6.17 takes kprobes pages from the ROX cache, already ROX)")
_KCORE_EVIDENCE = (
    "mm/execmem.c execmem_cache_populate (2e45474ab14f, 6.13-rc1): "
    "execmem_set_direct_map_valid(vm, false) takes the cache out of the direct map; "
    "925f42645118: \"this cannot be tolerated by /proc/kcore that accesses module memory "
    "using vread_iter() and the latter does vmalloc_to_page() and copy_page_to_iter_nofault()\""
)
_RW_COPY_EVIDENCE = (
    "kernel/module/main.c (0c133b1e78cd, 6.13-rc1): post_relocation does \"vfree(mem->rw_copy); "
    "mem->rw_copy = NULL;\" and module_writable_address returns loc + (mem->rw_copy - "
    "mem->base) for a formed module; livepatch writes its relocations there: \"BUG: unable to "
    "handle page fault for address: 00000000000012ba\" (Marek Maslanka)"
)
_CACHE_CLEAN_EVIDENCE = (
    "mm/execmem.c execmem_cache_clean (6.13-rc1 to 6.17): a free PMD-sized cache area gets its "
    "direct map back (execmem_set_direct_map_valid(vm, true)) and is vfree'd, and "
    "execmem_cache_populate's vmalloc has no VM_FLUSH_RESET_PERMS: vfree unmaps the ROX "
    "mapping, flushes the TLB lazily and frees the pages at once, so an executable TLB entry "
    "can outlive the free while the page is writable through the direct map (found by the "
    "model from the code; no report of it was found)"
)
_CACHE_CLEAN_FIX = "not fixed in the modelled versions (6.17): no report of it was found"

_V61 = dataclasses.replace(_V60, bpf_trampoline="ro_x")
_V62 = dataclasses.replace(_V61, set_memory_rox=True)
_V62 = dataclasses.replace(_V62, ftrace_tramp="rox")
_V68 = dataclasses.replace(_V62, bpf_trampoline="pack", bpf_struct_ops="pack")
_V610 = dataclasses.replace(_V68, set_memory_errors="checked", execmem="vmalloc", lock_order="rox")
_V613RC1 = dataclasses.replace(_V610, execmem="rox_cache", rox_cache_direct_map="invalid",
                               rox_text_write="rw_copy")
_V615 = dataclasses.replace(_V613RC1, rox_cache_direct_map="kept", rox_text_write="temp_rw",
                            cpa_collapse=True)
_V617 = dataclasses.replace(_V615, rox_cache_free="rw_fill_rox", rox_cache_users="module_kprobes_ftrace")

_USERS_FIXED = {
    "wx": "5b0d1c7bd572 \"bpf: Enforce W^X for bpf trampoline\" and 19c02415da23 \"bpf: use "
          "bpf_prog_pack for bpf_dispatcher\" (6.1); the ftrace boot path: not fixed by 6.0",
    "no_exec_uninit": "not fixed by 6.0: kprobes pages stay executable before they are written",
}

def _rox_era(name: str, summary: str, flags: Flags, wx_evidence: str) -> Profile:
    """6.2 to 6.10 share their history: kprobes and ftrace pages executable before they are
    written, and W^X broken when a direct-map split fails and nobody checks the error."""
    return Profile(name, summary, flags, frozenset({"no_exec_uninit"}), frozenset({"wx"}),
                   evidence={"no_exec_uninit": _UNWRITTEN_REST_EVIDENCE, "wx": wx_evidence},
                   fixed_by={"no_exec_uninit": _UNWRITTEN_REST_FIX, "wx": _ROX_ERRORS_FIX})


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "v5.1",
            "module_alloc maps PAGE_KERNEL_EXEC: writable and executable at once (5.1.0 to "
            "5.1.5; 5.1.6 took f2c65fb3221a)",
            dataclasses.replace(_V52, module_alloc_prot="rwx", flush_reset_perms=False,
                                kprobes_insn="rwx_ro", ftrace_tramp="rwx"),
            frozenset({"wx", "no_exec_uninit", "no_stale_exec"}),
            frozenset(),
            evidence={"no_exec_uninit": _KPROBES_EVIDENCE, "no_stale_exec": _STALE_TLB_EVIDENCE},
            fixed_by={"wx": "f2c65fb3221a (5.2) x86/modules: Avoid breaking W^X while loading modules",
                      "no_exec_uninit": _USERS_FIXED["no_exec_uninit"],
                      "no_stale_exec": "868b104d7379 \"mm/vmalloc: Add flag for freeing of special "
                                       "permsissions\" and 1a7b7d922081 \"modules: Use vmalloc "
                                       "special flag\" (5.2): vfree flushes the TLB before the "
                                       "pages are freed"},
        ),
        Profile(
            "v5.2",
            "W^X module loading, VM_FLUSH_RESET_PERMS, per-program BPF JIT images; ftrace "
            "trampolines still made executable while writable",
            _V52,
            frozenset({"wx", "no_exec_uninit"}),
            frozenset(),
            evidence={"wx": _V52_WX_EVIDENCE, "no_exec_uninit": _KPROBES_EVIDENCE},
            fixed_by={"wx": "768ae4406a5c (5.6) \"x86/ftrace: Use text_poke()\": runtime ftrace "
                            "trampolines written, then RO, then X",
                      "no_exec_uninit": _USERS_FIXED["no_exec_uninit"]},
        ),
        Profile(
            "v5.13-powerpc",
            "huge vmalloc by default (VM_NO_HUGE_VMAP to opt out), compound backing; "
            "module_alloc opts out and maps PAGE_KERNEL_EXEC; no set_memory_* yet (5.14)",
            dataclasses.replace(
                _V52, huge_vmalloc="opt_out", module_alloc_no_huge=True, cpa_alias=False,
                module_alloc_prot="rwx", set_memory=False, kprobes_insn="none", ftrace_tramp="none",
            ),
            frozenset({"no_tail_as_base", "wx", "refcount_sanity"}),
            evidence={
                "refcount_sanity": _TAIL_REFCOUNT_EVIDENCE,
                "wx": "arch/powerpc/kernel/module.c module_alloc (5.13): __vmalloc_node_range(..., "
                "PAGE_KERNEL_EXEC, VM_FLUSH_RESET_PERMS | VM_NO_HUGE_VMAP, ...); powerpc 5.13 has "
                "no ARCH_HAS_SET_MEMORY (arch/powerpc/mm/pageattr.c arrived with 1f9ad21c3b38 "
                "and STRICT_MODULE_RWX with c35717c71e98, both 5.14), so set_memory_ro/x are the "
                "generic no-op stubs and module text stays writable and executable for its life. "
                "domain.md declares only no_tail_as_base for this profile; the kernel wins",
            },
            fixed_by={"no_tail_as_base": "3b8000ae185c / 559089e0a93d (5.18-rc4)",
                      "refcount_sanity": "3b8000ae185c / 559089e0a93d (5.18-rc4)",
                      "wx": "c35717c71e98 / 4fcc636615b1 (5.14) powerpc STRICT_MODULE_RWX; "
                            "BPF JIT: 62e3d4210ac9 (5.14) \"powerpc/bpf: Write protect JIT code\""},
        ),
        Profile(
            "v5.18-rc1",
            "x86 huge vmalloc by default, compound backing, 2 MiB bpf_prog_packs made RO+X unfilled",
            _V518RC1,
            frozenset({"no_tail_as_base", "no_exec_uninit", "no_stale_exec", "refcount_sanity", "wx"}),
            frozenset({"direct_map_integrity"}),
            violated_with_nodes=frozenset({"pack_bookkeeping"}),
            evidence={
                "pack_bookkeeping": "kernel/bpf/core.c (5.18-rc1, ef078600eec2) "
                "select_bpf_prog_pack_size: size = BPF_HPAGE_SIZE * num_online_nodes(); "
                "module_alloc(size) is huge, so bpf_prog_pack_mask = BPF_HPAGE_MASK; "
                "__vmalloc_node_range aligns a huge area to PMD_SIZE only. bpf_prog_pack_free: "
                "pack_ptr = (void *)((unsigned long)hdr & bpf_prog_pack_mask); a program in the "
                "second PMD of a two-node pack finds no pack with that ptr, \"if "
                "(WARN_ON_ONCE(!found)) goto out;\": its chunks stay set and the pack is never "
                "freed",
                "refcount_sanity": _TAIL_REFCOUNT_EVIDENCE,
                "direct_map_integrity": "mm/vmalloc.c vm_remove_mappings / set_area_direct_map "
                "(5.18-rc1): set_direct_map_invalid_noflush / _default_noflush on each 4 KiB "
                "page of a huge alias must split the RO direct-map leaf; the failure is ignored "
                "and the page is freed with special permissions (Rick Edgecombe's mail)",
                "wx": _USERS_WX_EVIDENCE,
            },
            fixed_by={
                "no_tail_as_base": "559089e0a93d (opt-in huge) and 3b8000ae185c (split backing), 5.18-rc4",
                "no_exec_uninit": "d88bb5eed04c (5.19) bpf: Fill new bpf_prog_pack with illegal "
                                  "instructions; kprobes: " + _USERS_FIXED["no_exec_uninit"],
                "no_stale_exec": "fe736565efb7 (5.19) bpf_arch_text_invalidate for bpf_prog_pack",
                "direct_map_integrity": "559089e0a93d (5.18-rc4): packs back on 4 KiB pages",
                "pack_bookkeeping": "559089e0a93d (5.18-rc4): the probe is no longer huge, so packs "
                                    "are PAGE_SIZE and found by PAGE_MASK; ea2babac63d4 (6.0) finds "
                                    "packs of PMD_SIZE * nodes by range",
                "refcount_sanity": "559089e0a93d and 3b8000ae185c (5.18-rc4)",
                "wx": _USERS_FIXED["wx"],
            },
        ),
        Profile(
            "v5.18",
            "huge vmalloc opt-in, split backing, 4 KiB packs still made RO+X unfilled",
            _V518,
            frozenset({"no_exec_uninit", "no_stale_exec", "wx"}),
            frozenset(),
            evidence={"wx": _USERS_WX_EVIDENCE},
            fixed_by={
                "no_exec_uninit": "d88bb5eed04c (5.19, backported to 5.18.y); kprobes: "
                                  + _USERS_FIXED["no_exec_uninit"],
                "no_stale_exec": "fe736565efb7 (5.19) bpf_arch_text_invalidate",
                "wx": _USERS_FIXED["wx"],
            },
        ),
        Profile(
            "v5.18.y",
            "5.18 plus the backported fill of new packs",
            _V518Y,
            frozenset({"no_stale_exec", "no_exec_uninit", "wx"}),
            frozenset(),
            evidence={"wx": _USERS_WX_EVIDENCE, "no_exec_uninit": _KPROBES_EVIDENCE},
            fixed_by={"no_stale_exec": "fe736565efb7 (5.19) bpf_arch_text_invalidate", **_USERS_FIXED},
        ),
        Profile(
            "v5.19",
            "packs filled on creation and refilled when a program is freed",
            _V519,
            frozenset({"no_exec_uninit", "wx"}),
            frozenset(),
            evidence={"wx": _USERS_WX_EVIDENCE, "no_exec_uninit": _KPROBES_EVIDENCE},
            fixed_by=dict(_USERS_FIXED),
        ),
        Profile(
            "v6.0",
            "packs of PMD_SIZE * num_possible_nodes(), programs' packs found by range",
            _V60,
            frozenset({"no_exec_uninit", "wx"}),
            frozenset(),
            evidence={"wx": _USERS_WX_EVIDENCE, "no_exec_uninit": _KPROBES_EVIDENCE},
            fixed_by=dict(_USERS_FIXED),
        ),
        Profile(
            "v6.1",
            "W^X for BPF trampolines (written, then RO, then X); the dispatcher in a "
            "bpf_prog_pack chunk",
            _V61,
            frozenset({"no_exec_uninit", "wx"}),
            evidence={"wx": _FTRACE_BOOT_EVIDENCE, "no_exec_uninit": _UNWRITTEN_REST_EVIDENCE},
            fixed_by={"wx": _FTRACE_ROX_FIX, "no_exec_uninit": _UNWRITTEN_REST_FIX},
        ),
        _rox_era("v6.2", "set_memory_rox: one CPA call, NX never reaching the direct map; "
                 "ftrace trampolines RO+X at boot too", _V62, _ROX_SPLIT_EVIDENCE),
        _rox_era("v6.8", "x86 BPF trampolines and struct_ops images in bpf_prog_pack chunks",
                 _V68, _ROX_SPLIT_EVIDENCE),
        _rox_era("v6.10", "execmem_alloc; set_memory_* errors checked by the module loader and BPF",
                 _V610, _ROX_SPLIT_610_EVIDENCE),
        Profile(
            "v6.13-rc1",
            "x86 module text from the execmem ROX cache: out of the direct map, written through "
            "a writable copy (withdrawn for 6.13 by a9bbe3413331)",
            _V613RC1,
            frozenset({"no_exec_uninit", "wx", "no_invalid_alias", "no_stale_alias"}),
            evidence={"no_invalid_alias": _KCORE_EVIDENCE, "no_stale_alias": _RW_COPY_EVIDENCE,
                      "wx": _CACHE_CLEAN_EVIDENCE,
                      "no_exec_uninit": _UNWRITTEN_REST_EVIDENCE + "; " + _CACHE_CLEAN_EVIDENCE},
            fixed_by={"no_invalid_alias": "925f42645118 (6.15) \"execmem: don't remove ROX cache "
                                          "from the direct map\"",
                      "no_stale_alias": "4bcf29741145 (6.13) \"module: fix writing of livepatch "
                                        "relocations in ROX text\"; 6.15 drops the writable copy "
                                        "(05e555b81726, c287c0723329)",
                      "wx": _CACHE_CLEAN_FIX, "no_exec_uninit": _UNWRITTEN_REST_FIX},
        ),
        Profile(
            "v6.15",
            "the ROX cache back: direct map kept, text written through a temporary RW mapping, "
            "set_memory_rox collapses the huge vmalloc mapping",
            _V615,
            frozenset({"no_exec_uninit", "wx"}),
            evidence={"wx": _CACHE_CLEAN_EVIDENCE,
                      "no_exec_uninit": _UNWRITTEN_REST_EVIDENCE + "; " + _CACHE_CLEAN_EVIDENCE},
            fixed_by={"wx": _CACHE_CLEAN_FIX, "no_exec_uninit": _UNWRITTEN_REST_FIX},
        ),
        Profile(
            "v6.17",
            "kprobes and ftrace from the ROX cache; a free makes the range RW, fills INT3 and "
            "restores ROX",
            _V617,
            frozenset({"no_exec_uninit", "wx"}),
            evidence={"wx": _CACHE_CLEAN_EVIDENCE, "no_exec_uninit": _CACHE_CLEAN_EVIDENCE},
            fixed_by={"wx": _CACHE_CLEAN_FIX, "no_exec_uninit": _CACHE_CLEAN_FIX},
        ),
    )
}

# The base profile without the users that break wx or no_exec_uninit in every x86 version
# from 5.2 (BPF trampolines, kprobes pages, ftrace trampolines: each leaves part of its page
# unwritten but executable), for seeded bugs of those two invariants.
QUIET_USERS: dict[str, Any] = {"bpf_trampoline": "none", "bpf_struct_ops": "none", "kprobes_insn": "none",
                               "ftrace_tramp": "none"}


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
    # flags set in both runs (with and without the bug), so that the base holds `catches`
    base_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def all_overrides(self) -> dict[str, Any]:
        return {**self.base_overrides, **self.overrides}


SEEDED_BUGS: tuple[SeededBug, ...] = (
    SeededBug("exec-module-alloc", "v5.2", {"module_alloc_prot": "rwx"}, "wx",
              "module_alloc back to PAGE_KERNEL_EXEC, as before f2c65fb3221a", QUIET_USERS),
    SeededBug("x-before-ro", "v5.2", {"lock_order": "x_then_ro"}, "wx",
              "set_memory_x before set_memory_ro: the window f2c65fb3221a closed", QUIET_USERS),
    SeededBug("no-alias", "v5.19", {"cpa_alias": False}, "wx",
              "change_page_attr forgets the direct-map alias: code stays writable there",
              QUIET_USERS),
    SeededBug("huge-compound-again", "v5.19",
              {"huge_vmalloc": "opt_out", "huge_backing": "compound"}, "no_tail_as_base",
              "both 5.18-rc4 fixes reverted: fbdev's vmalloc is compound again"),
    SeededBug("unfilled-pack", "v5.19", {"pack_fill": False}, "no_exec_uninit",
              "d88bb5eed04c reverted: a new pack is RO+X before anything is written", QUIET_USERS),
    SeededBug("trampoline-rwx", "v5.19", {"bpf_trampoline": "rwx"}, "wx",
              "5b0d1c7bd572 reverted on a W^X-clean 5.19: a BPF trampoline is RW+X",
              {**QUIET_USERS, "bpf_trampoline": "none"}),
    SeededBug("kprobes-unwritten", "v5.19", {"kprobes_insn": "ro_x"}, "no_exec_uninit",
              "kprobes on a 5.19 that is otherwise clean: an insn page is RO+X before its "
              "first slot is written", {**QUIET_USERS, "kprobes_insn": "none"}),
    SeededBug("ftrace-boot-x-first", "v5.19", {"ftrace_tramp": "boot_x_first"}, "wx",
              "59566b0b622e's boot path on a W^X-clean 5.19: X before RO, written while RW+X",
              QUIET_USERS),
    SeededBug("no-invalidate", "v5.19", {"pack_invalidate": False}, "no_stale_exec",
              "fe736565efb7 reverted: a freed program's code stays executable"),
    SeededBug("alias-nx", "v5.19", {"cpa_alias_nx": True}, "direct_map_integrity",
              "set_memory_x also makes the direct-map alias executable"),
    SeededBug("reset-without-flush", "v5.19", {"flush_on_reset": False}, "no_stale_exec",
              "vm_remove_mappings resets the direct map but skips _vm_unmap_aliases: a freed "
              "module's text stays executable through a stale TLB entry (868b104d7379)"),
    SeededBug("oversized-no-flush-reset", "v5.19", {"oversized_flush_reset": False},
              "direct_map_integrity",
              "a program larger than the pack gets its own module_alloc without "
              "set_vm_flush_reset_perms: freed, its pages go back still RO in the direct map"),
    SeededBug("struct-ops-no-flush-reset", "v5.19", {"bpf_struct_ops": "ro_x_no_flush_reset"},
              "direct_map_integrity",
              "a struct_ops map image without set_vm_flush_reset_perms: freed, its page goes "
              "back still RO in the direct map"),
    SeededBug("vfree-first-page-only", "v5.19", {"vfree_each_page": False}, "no_leak",
              "vfree of split huge backing puts only the first page: kvmalloc's other pages "
              "stay allocated with nobody to free them"),
    SeededBug("no-reset-on-free", "v5.2", {"free_resets_perms": False}, "direct_map_integrity",
              "RO pages go back to the page allocator still RO in the direct map"),
    SeededBug("defio-no-get-page", "v5.19", {"driver_get_page": False}, "refcount_sanity",
              "fbdev deferred I/O keeps a page pointer without a reference: use after vfree"),
    SeededBug("rox-cache-out-of-direct-map", "v6.15", {"rox_cache_direct_map": "invalid"},
              "no_invalid_alias",
              "925f42645118 reverted: the ROX cache leaves the direct map and /proc/kcore reads "
              "a module's text through a missing alias"),
    SeededBug("rox-rw-copy", "v6.15", {"rox_text_write": "rw_copy"}, "no_stale_alias",
              "the 6.13-rc1 writable copy on 6.15: livepatch writes relocations through "
              "module_writable_address after post_relocation freed rw_copy"),
    SeededBug("lookup-by-mask", "v6.0", {"pack_lookup": "mask"}, "pack_bookkeeping",
              "ea2babac63d4 reverted: an unaligned pack is not found when a program is freed"),
)
