"""Tests of the model itself: the initial state is sane under every profile, no action
raises where its guard holds, bounds and flags reject nonsense."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invariants import INVARIANTS
from model.bounds import Bounds, BoundsError
from model.logic import CONCRETE
from model.profiles import PROFILES, ProfileError, get_profile, parse_flag_value
from model.system import System
from search.simulate import Walker


@pytest.mark.parametrize("faults", [False, True])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_initial_state_satisfies_every_invariant(profile: str, faults: bool) -> None:
    system = System.build(profile, faults=faults)
    s = system.initial()
    for name, inv in INVARIANTS.items():
        assert inv(s, system.ctx, CONCRETE), name


@settings(max_examples=40, derandomize=True, database=None, deadline=None)
@given(profile=st.sampled_from(list(PROFILES)), seed=st.integers(0, 2**16), faults=st.booleans())
def test_no_enabled_action_raises(profile: str, seed: int, faults: bool) -> None:
    """Every enabled instance of every visited state steps without an exception and keeps
    every field within its declared range."""
    system = System.build(profile, faults=faults)
    walker = Walker(system, seed=seed)
    s = system.initial()
    for _ in range(25):
        for inst in system.enabled(s):
            t = system.step(s, inst)
            assert all(0 <= r <= system.bounds.max_ref for r in t.pages.refcount), str(inst)
            assert all(0 <= m <= system.bounds.max_ref for m in t.pages.mapcount), str(inst)
        inst = walker.choose(s)
        if inst is None:
            break
        s = system.step(s, inst)


def test_walker_draws_only_enabled_instances() -> None:
    system = System.build("v5.18-rc1")
    walker = Walker(system, seed=3)
    s = system.initial()
    for _ in range(200):
        inst = walker.choose(s)
        if inst is None:
            s = system.initial()
            continue
        assert inst.guard(s, system.ctx, CONCRETE)
        s = system.step(s, inst)


def test_pre_guard_never_hides_an_enabled_instance() -> None:
    """`pre` is a conjunct of the guard; evaluating it first changes nothing."""
    system = System.build("v5.19")
    walker = Walker(system, seed=5)
    s = system.initial()
    for _ in range(100):
        for inst in system.instances:
            a, p = inst.action, inst.params
            full = bool(a.guard(s, p, system.ctx, CONCRETE)) and (
                a.pre is None or bool(a.pre(s, p, system.ctx, CONCRETE)))
            assert bool(inst.guard(s, system.ctx, CONCRETE)) == full
        inst = walker.choose(s)
        s = system.initial() if inst is None else system.step(s, inst)


@pytest.mark.parametrize("text", ["frames=3", "hpage=0", "areas=100", "chunks=x", "bogus=1",
                                  "frames=16,areas=2"])
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
