"""History, both ways: every violation a kernel version really had is found, with the
failing sequence of kernel calls printed, and nothing is found where the version is
declared safe. Every invariant catches at least one seeded bug."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis.stateful import run_state_machine_as_test

from invariants import INVARIANTS
from invariants.machine import Violation, ci_settings, machine_for
from model.profiles import PROFILES, SEEDED_BUGS
from model.system import System

FIND = ci_settings(max_examples=300)
SAFE = ci_settings(max_examples=60, steps=25)
# the use after free that follows the tail-page corruption needs six particular calls
DEEP = ci_settings(max_examples=1000, steps=30)
DEEP_CASES = {("v5.18-rc1", "refcount_sanity"), ("v5.13-powerpc", "refcount_sanity")}


def _declared() -> list[Any]:
    cases = []
    for name, prof in PROFILES.items():
        for faults in (False, True):
            for inv in INVARIANTS:
                if prof.expected(inv, faults) == "violated" and (
                    not faults or inv in prof.violated_with_faults
                ):
                    cases.append(pytest.param(name, inv, faults, id=f"{name}-{inv}"
                                              + ("-faults" if faults else "")))
    return cases


# seeded bugs whose shortest trace is as long: the pointer kept without a reference is
# used after vfree only at the end of a particular sequence
DEEP_BUGS = {"defio-no-get-page"}


def _find(system: System, invariant: str, deep_bug: bool = False) -> Violation | None:
    deep = deep_bug or ((system.profile.name, invariant) in DEEP_CASES and not system.overrides)
    try:
        run_state_machine_as_test(machine_for(system, [invariant]), settings=DEEP if deep else FIND)
    except Violation as v:
        return v
    return None


@pytest.mark.parametrize(("profile", "invariant", "faults"), _declared())
def test_declared_violation_is_found(profile: str, invariant: str, faults: bool,
                                     save_counterexample: Any, record_property: Any) -> None:
    system = System.build(profile, faults=faults)
    found = _find(system, invariant)
    assert found is not None, f"{profile}: the model lost the {invariant} bug of this version"
    assert found.invariant == invariant
    record_property("counterexample", str(found))
    save_counterexample(found)


@pytest.mark.parametrize("faults", [False, True], ids=["", "faults"])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_declared_invariants_hold(profile: str, faults: bool) -> None:
    system = System.build(profile, faults=faults)
    holding = [i for i in INVARIANTS if system.expected(i) == "holds"]
    assert holding, "a profile must declare something safe or the test checks nothing"
    try:
        run_state_machine_as_test(machine_for(system, holding), settings=SAFE)
    except Violation as v:
        pytest.fail(f"undeclared violation: {v}")


@pytest.mark.parametrize("bug", SEEDED_BUGS, ids=[b.name for b in SEEDED_BUGS])
def test_seeded_bug_is_caught(bug: Any, save_counterexample: Any, record_property: Any) -> None:
    base = System.build(bug.base)
    assert (base.expected(bug.catches) == "holds") == (not bug.base_overrides), \
        "a seeded bug starts from a safe profile, or says which users it quiets"
    system = System.build(bug.base, overrides=bug.all_overrides)
    found = _find(system, bug.catches, deep_bug=bug.name in DEEP_BUGS)
    assert found is not None, f"{bug.name}: {bug.catches} did not catch {bug.story}"
    record_property("counterexample", str(found))
    save_counterexample(found)


def test_every_invariant_catches_a_seeded_bug() -> None:
    assert {b.catches for b in SEEDED_BUGS} == set(INVARIANTS)


def test_a_safe_run_really_checks() -> None:
    """The machine is not vacuous: checking everything on v5.18-rc1 trips something."""
    system = System.build("v5.18-rc1")
    with pytest.raises(Violation, match=r"violated on v5\.18-rc1"):
        run_state_machine_as_test(machine_for(system, list(INVARIANTS)), settings=FIND)
