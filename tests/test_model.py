"""Tests of the model itself: the initial state is sane under every profile, no action
raises where its guard holds, bounds and flags reject nonsense."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invariants import INVARIANTS
from model.bounds import Bounds, BoundsError
from model.enabled import EnabledCache
from model.logic import CONCRETE
from model.profiles import PROFILES, ProfileError, get_profile, parse_flag_value
from model.state import State
from model.system import System
from search.engines.simulate import Walker


@pytest.mark.parametrize("faults", [False, True])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_initial_state_satisfies_every_invariant(profile: str, faults: bool) -> None:
    system = System.build(profile, faults=faults)
    s = system.initial()
    for name, inv in INVARIANTS.items():
        assert inv(s, system.ctx, CONCRETE), name


def visited(system: System, seed: int, n: int) -> Iterator[State]:
    """`n` states along seeded random walks, restarting where nothing is enabled."""
    walker = Walker(system, seed=seed)
    s = system.initial()
    for _ in range(n):
        yield s
        inst = walker.choose(s)
        if inst is not None:
            assert inst.guard(s, system.ctx, CONCRETE), "the walker drew a disabled instance"
        s = system.initial() if inst is None else system.step(s, inst)


@settings(max_examples=40, derandomize=True, database=None, deadline=None)
@given(profile=st.sampled_from(list(PROFILES)), seed=st.integers(0, 2**16), faults=st.booleans())
def test_no_enabled_action_raises(profile: str, seed: int, faults: bool) -> None:
    """Every enabled instance of every visited state steps without an exception and keeps
    every count within its declared range, except where the profile declares refcount_sanity
    violated: there the PTE's put_page on a detached tail underflows, as in the kernel."""
    system = System.build(profile, faults=faults)
    may_underflow = system.expected("refcount_sanity") == "violated"
    for s in visited(system, seed, 25):
        for inst in system.enabled(s):
            t = system.step(s, inst)
            counts = (*t.pages.refcount, *t.pages.mapcount)
            if not may_underflow:
                assert all(0 <= r <= system.bounds.max_ref for r in counts), str(inst)
            assert all(-1 <= r <= system.bounds.max_ref for r in counts), str(inst)


def test_pre_guard_and_cache_never_change_what_is_enabled() -> None:
    """`pre` is a conjunct of the guard and the EnabledCache reuses results only while
    their inputs are the same objects: both give exactly the plain guard's answer."""
    system = System.build("v5.19", faults=True)
    cache = EnabledCache(system.instances, system.ctx)
    for s in visited(system, 5, 150):
        plain = [i for i in system.instances
                 if bool(i.action.guard(s, i.params, system.ctx, CONCRETE))
                 and (i.action.pre is None or bool(i.action.pre(s, i.params, system.ctx, CONCRETE)))]
        assert system.enabled(s) == plain
        assert cache.enabled(s) == plain
    assert cache.hits > 0


@pytest.mark.parametrize("text", ["frames=3", "hpage=0", "hpage=3", "hpage=6,areas=2", "areas=100",
                                  "chunks=x", "bogus=1", "frames=16,areas=2"])
def test_bad_bounds_are_rejected(text: str) -> None:
    with pytest.raises(BoundsError):
        Bounds.parse(text)


def test_bounds_parse_keeps_frames_in_step() -> None:
    b = Bounds.parse("hpage=2,areas=3")
    assert (b.frames, b.hpage, b.areas) == (6, 2, 3)


def test_unknown_profile_and_flags_are_rejected() -> None:
    with pytest.raises(ProfileError):
        get_profile("v4.19")
    with pytest.raises(ProfileError):
        PROFILES["v5.19"].flags.with_overrides({"nonsense": True})
    with pytest.raises(ProfileError):
        PROFILES["v5.19"].flags.with_overrides({"pack_size": "enormous"})
    with pytest.raises(ProfileError):
        parse_flag_value("pack_fill", "maybe")


def test_every_flag_names_a_commit_or_says_it_is_a_seed() -> None:
    from model.profiles import FLAG_INFO

    for name, info in FLAG_INFO.items():
        assert any(ch.isdigit() for ch in info.doc) or "seeded bug" in info.doc, name


def test_every_action_has_a_kernel_docstring() -> None:
    from model.actions import ACTIONS

    for name, act in ACTIONS.items():
        assert "(" in act.doc and ("/" in act.doc or ".c" in act.doc or ".h" in act.doc), name
