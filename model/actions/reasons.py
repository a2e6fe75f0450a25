"""Why a built-in step cannot be taken, in kernel terms: one sentence per top-level conjunct
of its `pre` and of its guard, in the order the source writes them (a test keeps the two in
step). The calls only scenarios make carry their sentences with their checks instead."""

from __future__ import annotations

_HELD = ("driver pointer {ref} holds no page",)
_LOWEST_PROG = ("program slot {prog} is taken, or a lower one is free (the model takes the lowest)",)
_NO_AREA = ("no vm area slot with free backing for this size, or a lower one is free (the "
            "allocator takes the lowest; none left: the allocation returns NULL)")
_RAW = {"pre": _HELD, "guard": ("a raw write is always possible",)}

REASONS: dict[str, dict[str, tuple[str, ...]]] = {
    "vmalloc_to_page": {
        "pre": ("every driver page pointer is in use (bound refs), or a lower one is free",
                "frame {frame} is not in a driver's vmalloc buffer (the model's drivers look up "
                "their own buffers)"),
        "guard": ("frame {frame} lies beyond the end of the buffer: vmalloc_to_page returns NULL",
                  "the model's refcount bound max_ref is reached (not a kernel limit)"),
    },
    "put_page": {
        "pre": _HELD,
        "guard": ("the driver holds no reference on the page: its put_page would drop someone "
                  "else's",
                  "the page is mapped to user space: zap_page_range drops that reference",
                  "the page's refcount is 0 (put_page would underflow), or page->mapping is "
                  "still set (fb_deferred_io_cleanup clears it before the last put)"),
    },
    "do_set_pte": {
        "pre": _HELD,
        "guard": ("the fault handler took no reference for the PTE to keep (fb_deferred_io_fault does)",
                  "the page is mapped through this pointer already",
                  "the model's mapcount bound max_ref is reached (not a kernel limit)"),
    },
    "zap_page_range": {
        "pre": _HELD,
        "guard": ("nothing to unmap: the page is not mapped to user space",
                  "the page's mapcount is 0, or page->mapping is still set (fb_deferred_io_cleanup "
                  "clears it first)"),
    },
    "set_page_mapping": _RAW,
    "clear_page_mapping": _RAW,
    "set_page_index": _RAW,
    "set_page_private": _RAW,
    "INIT_LIST_HEAD": _RAW,
    "vmalloc": {"guard": (_NO_AREA,)},
    "kvmalloc": {"guard": (_NO_AREA,)},
    "move_module": {"guard": (_NO_AREA,)},
    "vfree": {
        "guard": ("vm area {area} is no driver's vmalloc buffer of {npages} pages: vfree would hit "
                  "\"Trying to vfree() nonexistent vm area\"",
                  "a driver still has page->mapping set on a page of it (fb_deferred_io_cleanup "
                  "clears it before the buffer is freed)"),
    },
    "kvfree": {"guard": ("vm area {area} is no kvmalloc'ed buffer of {npages} pages",)},
    "alloc_large_system_hash": {
        "guard": (_NO_AREA, "the boot-time hash table exists already (the model allocates one)"),
    },
    "set_memory_ro": {
        "guard": ("vm area {area} is no module or JIT image of {npages} pages that the loader is "
                  "about to make read-only (written, not locked yet)",),
    },
    "set_memory_x": {
        "guard": ("vm area {area} is no module or JIT image of {npages} pages that the loader is "
                  "about to make executable: set_memory_ro must come first (f2c65fb3221a, 5.2)",),
    },
    "module_memfree": {
        "guard": ("vm area {area} is no module image of {npages} pages",
                  "the module is not fully loaded: its text is not locked RO+X yet"),
    },
    "bpf_jit_binary_alloc": {"guard": (_LOWEST_PROG[0], _NO_AREA)},
    "bpf_int_jit_compile": {
        "guard": ("program {prog} has no JIT image allocated", "program {prog}'s image is written already"),
    },
    "bpf_jit_binary_free": {
        "guard": ("program {prog} does not exist",
                  "program {prog}'s image is half locked: bpf_jit_binary_lock_ro runs to the end first"),
    },
    "alloc_new_pack": {
        "pre": _LOWEST_PROG,
        "guard": ("a pack still has room: bpf_prog_pack_alloc takes a chunk of it instead",
                  "no vm area slot is free for a new pack, or a lower one is"),
    },
    "bpf_jit_binary_pack_alloc": {"pre": _LOWEST_PROG, "guard": (_NO_AREA,)},
    "bpf_prog_pack_alloc": {
        "pre": _LOWEST_PROG,
        "guard": ("vm area {area} is no bpf_prog_pack", "chunk {chunk} of the pack is taken",
                  "a lower chunk of the pack is free: bitmap_find_next_zero_area takes it",
                  "an earlier pack has room: the pack list is searched first fit"),
    },
    "bpf_arch_text_copy": {"guard": ("program {prog} holds no chunk that is not written yet",)},
    "bpf_prog_pack_free": {"guard": ("program {prog} does not exist",)},
    "bpf_trampoline_update": {"guard": (_NO_AREA,)},
    "bpf_tramp_image_put": {"guard": ("vm area {area} is no BPF trampoline image",)},
    "bpf_dispatcher_update": {"guard": (_NO_AREA, "the dispatcher's image exists already (one per "
                                        "dispatcher, never freed)")},
    "bpf_struct_ops_map_alloc": {"guard": (_NO_AREA,)},
    "bpf_struct_ops_map_update_elem": {
        "guard": ("vm area {area} is no struct_ops map image",
                  "the map is registered already (update_elem returns -EBUSY)"),
    },
    "bpf_struct_ops_map_free": {"guard": ("vm area {area} is no struct_ops map image",)},
    "alloc_insn_page": {"guard": (_NO_AREA,)},
    "arch_copy_kprobe": {"guard": ("vm area {area} is no kprobes instruction page",
                                   "the page's slot is written already (the model has one slot)")},
    "free_insn_page": {"guard": ("vm area {area} is no kprobes instruction page",)},
    "create_trampoline": {"guard": (_NO_AREA,)},
    "set_ftrace_ops_ro": {"guard": ("vm area {area} is no ftrace trampoline waiting for the end of "
                                    "boot (executable, still writable)",)},
    "arch_ftrace_trampoline_free": {"guard": ("vm area {area} is no finished ftrace trampoline",)},
    "module_enable_text_rox": {
        "guard": ("vm area {area} is no module of {npages} pages whose text is written and not "
                  "locked yet",),
    },
    "execmem_cache_populate": {
        "guard": (_NO_AREA, "the cache has a free huge page: execmem_cache_alloc carves from it "
                            "instead of populating"),
    },
    "execmem_cache_clean": {"guard": ("vm area {area} is no free huge page of the ROX cache",)},
    "module_memory_alloc": {
        "guard": ("vm area {area} is no free huge page of the ROX cache, or a lower one is (the "
                  "model carves from the lowest; none: execmem_cache_populate first)",),
    },
    **{name: {"guard": ("vm area {area} holds no module text",
                        "vm area {area} is not from the ROX cache",
                        "the module is not at that stage of its load (" + stage + ")")}
       for name, stage in (("post_relocation", "written, not relocated yet"),
                           ("module_memory_restore_rox", "written in place, not restored yet"),
                           ("klp_apply_section_relocs", "loaded"),
                           ("module_memory_free", "loaded"))},
    "read_kcore": {"guard": ("vm area {area} is not allocated: /proc/kcore reads it as a hole",)},
}
