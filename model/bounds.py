"""Bounds: the small scope every engine explores (as in Alloy or TLC's CONSTANTS)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import ClassVar


class BoundsError(ValueError):
    """Bounds that make no model: the message is one line, meant for a user."""


@dataclass(frozen=True)
class Bounds:
    """How big the modelled machine is.

    A real 2 MiB huge page is `hpage` frames; nothing in the model hard-codes 512. Each vm
    area slot owns one huge-page-aligned zone of `hpage` frames, which is also one leaf of
    the direct map, so `frames` is always `areas * hpage`: placing backing memory is the
    allocator's business, and the bugs live in what happens inside a zone.

    The default is the smallest scope in which every historical bug still shows (a
    compound page needs a tail, a pack two chunks, a stale program a second one to keep
    its pack alive); `WIDE` (16 frames, 4-frame huge pages, 4 areas, 4 chunks, 2 driver
    pointers) is the scope of the original brief, for deeper looks at fewer steps.
    """

    frames: int = 4  # physical frames (struct pages)
    hpage: int = 2  # frames per PMD-sized huge page / direct-map leaf
    areas: int = 2  # vm area slots (vmalloc, module_alloc, packs)
    chunks: int = 2  # bpf_prog_pack chunks per pack; also content cells per frame
    progs: int = 2  # BPF program slots
    refs: int = 1  # driver-held struct page pointers (vmalloc_to_page)
    max_ref: int = 3  # largest _refcount / _mapcount the model lets a driver build up
    # NUMA nodes. A pack sized per node (5.18-rc1: BPF_HPAGE_SIZE * num_online_nodes()) is
    # `nodes` PMDs; the model keeps it in one slot and gives each PMD chunks/nodes of its
    # chunks, which is what the free path's address lookup depends on
    nodes: int = 1

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "frames": (2, 64),
        "hpage": (2, 16),
        "areas": (1, 8),
        "chunks": (1, 8),
        "progs": (1, 4),
        "refs": (0, 4),
        "max_ref": (2, 8),
        "nodes": (1, 4),
    }

    def __post_init__(self) -> None:
        for f in fields(self):
            lo, hi = self.LIMITS[f.name]
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise BoundsError(f"bound {f.name}={v!r} is out of range {lo}..{hi}")
        if self.hpage & (self.hpage - 1):
            # a PMD maps PTRS_PER_PTE pages, a power of two, and the model finds a frame's
            # huge page by its low bits as the kernel does (`f % hpage`, `f - f % hpage`)
            raise BoundsError(f"bound hpage={self.hpage} must be a power of two "
                              "(PTRS_PER_PTE is)")
        if self.frames != self.areas * self.hpage:
            raise BoundsError(
                f"frames={self.frames} must equal areas*hpage={self.areas * self.hpage} "
                "(each vm area slot owns one huge-page zone)"
            )

        if self.chunks % self.nodes:
            raise BoundsError(f"chunks={self.chunks} must be a multiple of nodes={self.nodes} "
                              "(each node's PMD of a pack holds the same number of chunks)")

    @property
    def cells(self) -> int:
        """Content cells per frame: a one-frame pack holds `chunks` chunks."""
        return self.chunks

    def zone(self, area: int) -> range:
        """The frames that back vm area slot `area`."""
        return range(area * self.hpage, (area + 1) * self.hpage)

    def as_dict(self) -> dict[str, int]:
        """Every bound; `nodes` only when it is not 1, so that traces and scopes written
        before the bound existed stay what they were."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if OPTIONAL.get(f.name) != v:
                out[f.name] = v
        return out

    @classmethod
    def parse(cls, text: str) -> Bounds:
        """`small`, `wide`, or `frames=16,hpage=4,...`; `frames` follows `areas*hpage`
        unless given. Every value is checked against its range before any arithmetic."""
        if text.strip() in PRESETS:
            return PRESETS[text.strip()]
        values: dict[str, int] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in cls.LIMITS:
                raise BoundsError(f"bad bound {_echo(item)}; known: {', '.join(cls.LIMITS)}")
            if key in values:
                raise BoundsError(f"bound {key} is given twice")
            raw = raw.strip()
            if not _INT.fullmatch(raw):
                raise BoundsError(f"bound {key} needs a whole number, got {_echo(raw)}")
            lo, hi = cls.LIMITS[key]
            # at most a few digits by now: int() cannot hit Python's digit limit
            v = int(raw) if len(raw) <= 6 else hi + 1
            if not lo <= v <= hi:
                shown = raw if len(raw) <= 6 else f"{raw[:6]}... ({len(raw)} digits)"
                raise BoundsError(f"bound {key}={shown} is out of range {lo}..{hi}")
            values[key] = v
        d = cls()
        if "frames" not in values:
            values["frames"] = values.get("areas", d.areas) * values.get("hpage", d.hpage)
        elif "areas" not in values and values["frames"] % values.get("hpage", d.hpage) == 0:
            values["areas"] = values["frames"] // values.get("hpage", d.hpage)
        return cls(**values)


_INT = re.compile(r"-?[0-9]+")
# bounds left out of a scope when they have this value (traces from before they existed)
OPTIONAL: dict[str, int] = {"nodes": 1}


def _echo(text: str, limit: int = 60) -> str:
    """Text from the command line quoted in a message: escaped, and cut to `limit`."""
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 3] + "..."


DEFAULT_BOUNDS = Bounds()
WIDE = Bounds(frames=16, hpage=4, areas=4, chunks=4, progs=2, refs=2)
# the default scope with two NUMA nodes: where a profile's violated_with_nodes show
NUMA_BOUNDS = Bounds(nodes=2)
PRESETS = {"small": DEFAULT_BOUNDS, "wide": WIDE, "numa": NUMA_BOUNDS}
