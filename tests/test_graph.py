"""The trace graph: def-use edges, causal slice, renderings, explanation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from helpers import STALE_STEPS, make

from model.bounds import WIDE
from model.system import System
from search.traces.graph import (
    causal_slice,
    explain,
    render_dot,
    render_mermaid,
    render_png,
    render_text,
    trace_graph,
)
from search.traces.trace import Trace, find_instances, trace_from_steps


@pytest.fixture(scope="module")
def noisy() -> Trace:
    """The tail-page story with unrelated allocations and a second driver in between."""
    return make("v5.18-rc1", ["vmalloc(area=0, npages=4)", "vmalloc(area=1, npages=1)",
                              "kvmalloc(area=2, npages=4)", "vmalloc_to_page(ref=0, frame=1)",
                              "vmalloc_to_page(ref=1, frame=4)",
                              "set_page_mapping(ref=0)"], "no_tail_as_base")


def test_graph_shape(tail: Trace) -> None:
    g = trace_graph(tail)
    assert sorted(g.nodes) == [0, 1, 2, 3]
    assert all(g.edges[k - 1, k]["path"] for k in (1, 2, 3))
    # set_page_mapping reads the ref that vmalloc_to_page took
    assert "refs.frame.0" in g.edges[2, 3]["leaves"]
    # the violation reads the tail that vmalloc made
    assert "pages.kind.1" in g.edges[1, 3]["leaves"]


def test_stale_slice(stale: Trace) -> None:
    sl = causal_slice(stale)
    assert {1, 3, 4} <= sl  # the first alloc, the copy, the free
    assert sl == {1, 2, 3, 4}  # and prog 1 keeps the pack from being freed


def test_slice_drops_unrelated_steps(noisy: Trace) -> None:
    assert causal_slice(noisy) == {1, 4, 6}


def test_render_text(tail: Trace, noisy: Trace) -> None:
    text = render_text(tail)
    assert "* 3. set_page_mapping(ref=0)" in text
    assert "pages.mapping[1]: TAIL_MAPPING -> file" in text
    assert "pages.kind[1..3]: free -> tail" in text
    sliced = render_text(noisy, slice_only=True)
    assert "kvmalloc" not in sliced and "omitted: steps 2, 3, 5" in sliced


def test_render_dot_and_mermaid(stale: Trace) -> None:
    dot = render_dot(stale)
    assert dot.startswith("digraph trace {") and dot.rstrip().endswith("}")
    assert "n3 -> n4" in dot and "style=dashed" in dot
    mm = render_mermaid(stale)
    assert mm.startswith("flowchart TD")
    assert "class s1,s2,s3,s4 slice" in mm
    assert "s3 -.->" in mm


def test_render_png(tmp_path: Path, stale: Trace) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed (pip install allocheck[png])")
    out = render_png(stale, tmp_path / "stale.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_tail(tail: Trace) -> None:
    text = explain(tail)
    assert "no_tail_as_base is violated after step 3 under v5.18-rc1" in text
    assert "frame 1: pages.mapping[1] is file; TAIL_MAPPING would do" in text
    assert "huge_vmalloc=opt_out" in text and "huge_backing=compound" in text
    assert "do not matter here: pack_size" in text
    assert "559089e0a93d" in text


def test_explain_stale(stale: Trace) -> None:
    text = explain(stale)
    assert "pack_invalidate=false (under v5.19: true)" in text
    assert "fe736565efb7" in text


def test_explain_seeded_bug() -> None:
    system = System.build("v5.19", bounds=WIDE, overrides={"pack_invalidate": False})
    t = trace_from_steps(system, find_instances(system, STALE_STEPS), "no_stale_exec", "test")
    text = explain(t)
    assert "holds under v5.19" in text and "Seeded bug no-invalidate" in text
