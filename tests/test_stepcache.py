"""The memoised concrete interpreter (model/enabled.py, the simulate engine's walker)
answers exactly what the plain guards and effects answer, and walks exactly as the plain
algorithm does with the same seed."""

from __future__ import annotations

import random

import pytest

from model.actions import Instance
from model.bounds import WIDE, Bounds
from model.enabled import EnabledCache, _tuple_recording
from model.logic import CONCRETE
from model.profiles import PROFILES
from model.state import State
from model.system import System
from search.engines.simulate import Walker

CASES = [(p, False, None) for p in PROFILES] + [("v5.19", True, None), ("v5.2", True, None),
                                                ("v6.0", False, WIDE)]


def _build(profile: str, faults: bool, bounds: Bounds | None) -> System:
    return System.build(profile, faults=faults, **({"bounds": bounds} if bounds else {}))


def _plain_walk(system: System, seed: int, walks: int, length: int,
                patience: int = 32) -> list[tuple[str, State]]:
    """The walker's algorithm with nothing remembered: rng.randrange and plain guards."""
    rng = random.Random(seed)
    n = len(system.instances)
    out: list[tuple[str, State]] = []
    for _ in range(walks):
        s = system.initial()
        for _ in range(length):
            pick: Instance | None = None
            for _ in range(patience):
                inst = system.instances[rng.randrange(n)]
                if inst.guard(s, system.ctx, CONCRETE):
                    pick = inst
                    break
            if pick is None:
                enabled = system.enabled(s)
                if not enabled:
                    break
                pick = enabled[rng.randrange(len(enabled))]
            s = system.step(s, pick)
            out.append((str(pick), s))
    return out


@pytest.mark.parametrize(("profile", "faults", "bounds"), CASES,
                         ids=[f"{p}{'-faults' if f else ''}{'-wide' if b else ''}"
                              for p, f, b in CASES])
def test_walks_are_the_plain_walks(profile: str, faults: bool, bounds: Bounds | None) -> None:
    system = _build(profile, faults, bounds)
    walker = Walker(system, seed=7)
    got = [(str(i), s) for _ in range(40) for i, s in walker.walk(25)]
    want = _plain_walk(system, 7, 40, 25)
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1] for g in got] == [w[1] for w in want]
    # the walks revisited states and fields: the memo was used, not only filled
    assert walker.cache.hits > 0 and walker.cache.effect_hits > 0


@pytest.mark.parametrize(("profile", "faults", "bounds"), CASES,
                         ids=[f"{p}{'-faults' if f else ''}{'-wide' if b else ''}"
                              for p, f, b in CASES])
def test_every_guard_and_effect_agrees(profile: str, faults: bool, bounds: Bounds | None) -> None:
    """On the states of seeded walks, every instance: the memoised guard is the plain
    guard, and where it holds the memoised effect is the plain effect, field for field."""
    system = _build(profile, faults, bounds)
    cache = EnabledCache(system.instances, system.ctx)
    walker = Walker(system, seed=3)
    states = [system.initial()] + [s for _ in range(6) for _, s in walker.walk(15)]
    for s in states:
        for k, inst in enumerate(system.instances):
            plain = bool(inst.guard(s, system.ctx, CONCRETE))
            assert cache.is_enabled(k, s) == plain, (str(inst), s)
            if plain:
                assert cache.step(s, k) == system.step(s, inst), str(inst)
    assert cache.hits > 0 and cache.effect_hits > 0


def test_a_guard_may_not_write_or_compare_parts() -> None:
    from model.enabled import _Recording

    rec = _Recording(_build("v5.19", False, None).initial())
    with pytest.raises(AttributeError):
        rec.pages.kind = ()
    with pytest.raises(TypeError):
        _ = rec.pages == rec.pages
    with pytest.raises(AttributeError):
        rec.replace()


def test_full_tables_are_emptied_without_changing_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    import model.enabled
    import search.engines.simulate

    monkeypatch.setattr(model.enabled, "TABLE_LIMIT", 2)
    monkeypatch.setattr(search.engines.simulate, "STATE_LIMIT", 3)
    system = _build("v5.18-rc1", False, None)
    walker = Walker(system, seed=11)
    got = [(str(i), s) for _ in range(10) for i, s in walker.walk(20)]
    assert got == _plain_walk(system, 11, 10, 20)


def test_the_recorder_notes_what_a_guard_reads() -> None:
    """Element by element where a guard indexes, negative indices by their position; the
    whole field for anything else, a tuple added in front of it too (mutation testing:
    the position of `t[-1]` and `tuple + t` went unchecked, no guard using either)."""
    read: list[str] = []
    rec = _tuple_recording((5, 6, 7), "pages.kind", read)
    assert (rec[-1], rec[0]) == (7, 5) and read == ["pages.kind[2]", "pages.kind[0]"]
    read.clear()
    assert rec[1:] == (6, 7) and read == ["pages.kind[1]", "pages.kind[2]"]
    read.clear()
    assert (4,) + rec == (4, 5, 6, 7) and rec + (8,) == (5, 6, 7, 8)  # noqa: RUF005 (the operators are what is tested)
    assert read == ["pages.kind", "pages.kind"]
    read.clear()
    assert list(rec) == [5, 6, 7] and 6 in rec and rec.index(7) == 2
    assert read == ["pages.kind"] * 3


def test_a_guards_table_keeps_answers_for_more_than_one_state() -> None:
    """The cache is for speed: going back to a state answers every guard from its tables
    (mutation testing: a table emptied on every insertion, or a limit of 0 or 1, changed
    no answer and went unnoticed)."""
    system = System.build("v5.19")
    cache = EnabledCache(system.instances, system.ctx)
    s0 = system.initial()
    s1 = system.step(s0, system.enabled(s0)[0])
    assert cache.enabled(s0) == system.enabled(s0) and cache.enabled(s1) == system.enabled(s1)
    hits = cache.hits
    assert cache.enabled(s0) == system.enabled(s0)
    assert cache.hits - hits == len(system.instances)
