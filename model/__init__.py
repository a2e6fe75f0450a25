"""The allocheck model: Linux page metadata, vmalloc, change_page_attr and BPF as a
transition system, written once against a `Logic` and interpreted concretely or with z3.

Nothing in this package knows how it is checked (see ../shared/architecture.md).
"""
