"""Hypothesis stateful testing of the model: a RuleBasedStateMachine built from the action
table (one rule per kernel function, its precondition the guards under `Concrete`),
checking invariants after every step."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from invariants import INVARIANTS
from model.actions import Instance
from model.logic import CONCRETE
from model.system import System


class Violation(AssertionError):
    """An invariant failed; the message narrates the kernel calls that led there."""

    def __init__(self, invariant: str, steps: list[Instance], system: System) -> None:
        self.invariant = invariant
        self.steps = list(steps)
        self.system = system
        calls = "\n".join(f"  {k}. {inst}" for k, inst in enumerate(steps, 1))
        faults = ", page-table allocations may fail" if system.faults else ""
        super().__init__(
            f"{invariant} violated on {system.profile.name}{faults} after {len(steps)} "
            f"kernel calls:\n{calls}"
        )


def machine_for(system: System, check: Iterable[str]) -> type[RuleBasedStateMachine]:
    """A state machine class over `system` that checks the invariants named in `check`."""
    checked = tuple(check)
    for name in checked:
        if name not in INVARIANTS:
            raise KeyError(name)
    by_action: dict[str, list[Instance]] = {}
    for inst in system.instances:
        by_action.setdefault(inst.name, []).append(inst)

    def init(self: Any) -> None:
        self.s = system.initial()
        self.steps = []

    def check_all(self: Any) -> None:
        for name in checked:
            if not INVARIANTS[name](self.s, system.ctx, CONCRETE):
                raise Violation(name, self.steps, system)

    attrs: dict[str, Any] = {
        "init": initialize()(init),
        "check": invariant()(check_all),
        "system": system,
        "checked": checked,
    }
    for name, insts in by_action.items():
        attrs[name] = _rule(system, insts)

    def stutter(self: Any) -> None:
        """Nothing is enabled (every slot taken for good, e.g. by a boot-time hash table):
        the kernel idles. Hypothesis needs a rule it can take."""

    def deadlocked(self: Any) -> bool:
        return not any(i.guard(self.s, system.ctx, CONCRETE) for i in system.instances)

    attrs["stutter"] = rule()(precondition(deadlocked)(stutter))
    return type(f"Kernel_{system.profile.name.replace('.', '_').replace('-', '_')}",
                (RuleBasedStateMachine,), attrs)


def _rule(system: System, insts: list[Instance]) -> Any:
    name = insts[0].name

    def enabled(self: Any) -> list[Instance]:
        # hypothesis asks every rule's precondition at every step: compute each once
        memo = self.__dict__.setdefault("_enabled", {})
        key = (id(self.s), name)
        if key not in memo:
            if len(memo) > 256:
                memo.clear()
            memo[key] = (self.s, [i for i in insts if i.guard(self.s, system.ctx, CONCRETE)])
        return memo[key][1]

    def step(self: Any, data: st.DataObject) -> None:
        # drawn by its kernel-call text, so that hypothesis prints the call itself
        options = {str(i): i for i in enabled(self)}
        inst = options[data.draw(st.sampled_from(sorted(options)), label=name)]
        self.s = system.step(self.s, inst)
        self.steps.append(inst)

    step.__name__ = insts[0].name
    return rule(data=st.data())(precondition(lambda self: bool(enabled(self)))(step))


def ci_settings(max_examples: int, steps: int = 20) -> settings:
    """Deterministic settings: a flaky test would block every landing."""
    return settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        # the explain phase re-runs the shrunk example hundreds of times to annotate it;
        # Violation already narrates the kernel calls
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large],
    )
