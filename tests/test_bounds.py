"""A scope is exactly what `Bounds` says it is: each range's ends accepted and one past them
refused by the range check itself, and the rules that tie bounds together (frames =
areas * hpage, hpage a power of two, chunks a multiple of nodes) refused where they fail
in either direction. Mutation testing found each range end, and `frames != areas*hpage`
weakened to `<`, unchecked (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest

from model.bounds import DEFAULT_BOUNDS, PRESETS, Bounds, BoundsError

# (the bounds, None if they are a scope, else what the refusal names)
CASES: list[tuple[dict[str, Any], str | None]] = [
    ({"frames": 2, "hpage": 2, "areas": 1}, None),
    ({"frames": 64, "hpage": 8, "areas": 8}, None),
    ({"frames": 64, "hpage": 16, "areas": 4}, None),
    ({"frames": 1, "hpage": 2, "areas": 1}, "bound frames=1 is out of range 2..64"),
    ({"frames": 65, "hpage": 2, "areas": 2}, "bound frames=65 is out of range 2..64"),
    ({"frames": 2, "hpage": 1, "areas": 2}, "bound hpage=1 is out of range 2..16"),
    ({"frames": 34, "hpage": 17, "areas": 2}, "bound hpage=17 is out of range 2..16"),
    ({"frames": 4, "hpage": 4, "areas": 0}, "bound areas=0 is out of range 1..8"),
    ({"frames": 18, "hpage": 2, "areas": 9}, "bound areas=9 is out of range 1..8"),
    ({"chunks": 1, "nodes": 1}, None),
    ({"chunks": 8, "nodes": 4}, None),
    ({"chunks": 0}, "bound chunks=0 is out of range 1..8"),
    ({"chunks": 9}, "bound chunks=9 is out of range 1..8"),
    ({"progs": 1}, None),
    ({"progs": 4}, None),
    ({"progs": 0}, "bound progs=0 is out of range 1..4"),
    ({"progs": 5}, "bound progs=5 is out of range 1..4"),
    ({"refs": 0}, None),
    ({"refs": 4}, None),
    ({"refs": -1}, "bound refs=-1 is out of range 0..4"),
    ({"refs": 5}, "bound refs=5 is out of range 0..4"),
    ({"max_ref": 2}, None),
    ({"max_ref": 8}, None),
    ({"max_ref": 1}, "bound max_ref=1 is out of range 2..8"),
    ({"max_ref": 9}, "bound max_ref=9 is out of range 2..8"),
    ({"nodes": 1}, None),
    ({"nodes": 4, "chunks": 4}, None),
    ({"nodes": 0}, "bound nodes=0 is out of range 1..4"),
    ({"nodes": 5, "chunks": 5}, "bound nodes=5 is out of range 1..4"),
    # the rules between bounds, each way round
    ({"frames": 8, "hpage": 2, "areas": 2}, "frames=8 must equal areas*hpage=4"),
    ({"frames": 4, "hpage": 4, "areas": 2}, "frames=4 must equal areas*hpage=8"),
    ({"frames": 12, "hpage": 6, "areas": 2}, "hpage=6 must be a power of two"),
    ({"chunks": 3, "nodes": 2}, "chunks=3 must be a multiple of nodes=2"),
    ({"frames": 4, "hpage": True, "areas": 4}, "bound hpage=True is out of range"),
]


def _bounds(kw: dict[str, Any]) -> Bounds:
    fields = {**{k: getattr(DEFAULT_BOUNDS, k) for k in Bounds.LIMITS}, **kw}
    return Bounds(**fields)


@pytest.mark.parametrize(("kw", "refusal"), CASES, ids=[str(kw) for kw, _ in CASES])
def test_a_scope_is_exactly_what_the_limits_and_rules_allow(kw: dict[str, Any],
                                                           refusal: str | None) -> None:
    if refusal is None:
        b = _bounds(kw)
        assert all(getattr(b, k) == v for k, v in kw.items())
    else:
        with pytest.raises(BoundsError) as got:
            _bounds(kw)
        assert refusal in str(got.value)


def test_every_limit_has_both_ends_in_a_case() -> None:
    """A bound added to LIMITS without its cases here fails this test."""
    for name, (lo, hi) in Bounds.LIMITS.items():
        for v in (lo, hi):
            assert any(kw.get(name) == v and refusal is None for kw, refusal in CASES), (name, v)
        for v in (lo - 1, hi + 1):
            assert any(kw.get(name) == v and refusal and f"{name}={v} is out of range" in refusal
                       for kw, refusal in CASES), (name, v)


def test_the_presets_are_scopes() -> None:
    assert PRESETS["small"] == DEFAULT_BOUNDS
    # the brief's wide scope: 16 frames, 4-frame huge pages, 4 areas, 4 chunks, 2 driver
    # pointers (a mutant of the validation sample gave it 3 chunks unnoticed)
    assert PRESETS["wide"].as_dict() == {**DEFAULT_BOUNDS.as_dict(), "frames": 16, "hpage": 4,
                                         "areas": 4, "chunks": 4, "progs": 2, "refs": 2}
    assert PRESETS["numa"].nodes == 2


@pytest.mark.parametrize(("text", "refusal"), [
    ("progs=1234567", "bound progs=123456... (7 digits) is out of range 1..4"),
    ("progs=-1234567", "is out of range 1..4"),
    ("refs=" + "9" * 5000, "(5000 digits) is out of range 0..4"),
    ("x" * 100 + "=1", "bad bound 'xxxx"),
    ("progs=" + "z" * 100, "bound progs needs a whole number, got 'zzz"),
])
def test_parse_refuses_absurd_text_in_one_short_line(text: str, refusal: str) -> None:
    """However long the text, the refusal is one line that quotes at most 60 characters
    of it (mutation testing: a 7-digit bound read as half the range's top, and the quote
    never cut, went unchecked by the fast checks)."""
    with pytest.raises(BoundsError) as got:
        Bounds.parse(text)
    message = str(got.value)
    assert refusal in message and "\n" not in message and len(message) < 160, message


def test_parse_fills_in_frames_or_areas() -> None:
    assert Bounds.parse("hpage=2,areas=3") == _bounds({"frames": 6, "hpage": 2, "areas": 3})
    assert Bounds.parse("frames=8,hpage=4") == _bounds({"frames": 8, "hpage": 4, "areas": 2})
    assert Bounds.parse(" wide ") == PRESETS["wide"]
    # all three given and out of step: refused, never one of them recomputed (a mutant of
    # the validation sample did that silently)
    with pytest.raises(BoundsError, match="frames=8 must equal areas\\*hpage=4"):
        Bounds.parse("frames=8,hpage=2,areas=2")
