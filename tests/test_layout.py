"""Where things lie in a vm area slot's zone: a pack's chunks cut its content cells in
order, with nothing left over and nothing shared, and a module's text and data pages are
its image, text first. Checked at scopes whose counts are not powers of two, where `+`
and `^` part (mutation testing: `start * cells + chunk * per` -> `^` went unnoticed at
the default scope, where every count is one)."""

from __future__ import annotations

import pytest

from model.actions.base import Ctx
from model.actions.bpf_pack import chunk_cells, pack_pages
from model.actions.code import data_range, text_range
from model.actions.scenario_pages import _block, orders
from model.actions.scenario_text import numpages_at
from model.bounds import Bounds
from model.profiles import PROFILES
from model.state import OWN_BPF_JIT, OWN_MODULE

SCOPES = [Bounds(), Bounds(frames=16, hpage=4, areas=4, chunks=4),
          Bounds(frames=6, hpage=2, areas=3, chunks=3), Bounds(frames=24, hpage=8, areas=3, chunks=6)]


@pytest.mark.parametrize("bounds", SCOPES, ids=str)
@pytest.mark.parametrize("profile", ["v5.19", "v6.0"])
def test_a_packs_chunks_cut_its_cells_in_order(bounds: Bounds, profile: str) -> None:
    c = Ctx(bounds, PROFILES[profile].flags)
    for area in range(bounds.areas):
        start = bounds.zone(area).start * bounds.cells
        cells = [x for k in range(bounds.chunks) for x in chunk_cells(c, area, k)]
        assert cells == list(range(start, start + pack_pages(c) * bounds.cells)), (area, cells)
        assert all(len(chunk_cells(c, area, k)) == len(cells) // bounds.chunks
                   for k in range(bounds.chunks))


@pytest.mark.parametrize("bounds", SCOPES, ids=str)
def test_a_modules_text_then_data_are_its_image(bounds: Bounds) -> None:
    c = Ctx(bounds, PROFILES["v5.2"].flags)
    for area in range(bounds.areas):
        zone = bounds.zone(area)
        for n in range(1, bounds.hpage + 1):
            text, data = text_range(c, area, n, OWN_MODULE), data_range(c, area, n)
            assert [*text, *data] == list(zone[:n])
            assert len(data) == (1 if n > 1 else 0)
            assert text_range(c, area, n, OWN_BPF_JIT) == zone[:n]


@pytest.mark.parametrize("bounds", SCOPES, ids=str)
def test_a_buddy_block_is_aligned_and_inside_one_huge_page(bounds: Bounds) -> None:
    """Every frame and order of the scope: a block exactly where the frame is aligned to
    the order, then within the scope and one huge page (mutation testing: refusing the
    block that ends at the scope's end went unnoticed)."""
    c = Ctx(bounds, PROFILES["v5.19"].flags)
    assert list(orders(c)) == list(range(bounds.hpage.bit_length()))
    for order in orders(c):
        n = 1 << order
        for frame in range(bounds.frames):
            blk = _block(c, frame, order)
            assert (blk is not None) == (frame % n == 0), (frame, order)
            if blk is not None:
                assert blk == range(frame, frame + n) and blk.stop <= bounds.frames
                assert frame // bounds.hpage == (blk.stop - 1) // bounds.hpage


@pytest.mark.parametrize("bounds", SCOPES, ids=str)
def test_set_memory_numpages_from_the_areas_start(bounds: Bounds) -> None:
    """A scenario's set_memory_*(addr, numpages) (mutation testing: `start | numpages`,
    equal to `+` below a whole zone, went unnoticed)."""
    c = Ctx(bounds, PROFILES["v6.2"].flags)
    for area in range(bounds.areas):
        for n in range(1, bounds.hpage + 1):
            assert numpages_at(c, {"addr": area, "numpages": n}) == bounds.zone(area)[:n]
