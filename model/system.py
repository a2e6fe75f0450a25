"""A kernel configuration as a transition system: initial state, instances, next state.

This is what every engine explores (cf. Stateright's `Model`): the profile's flags, the
bounds and the fault switch fixed; the concrete interpretation for stepping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model.actions import Ctx, Instance, all_instances
from model.bounds import DEFAULT_BOUNDS, Bounds
from model.logic import CONCRETE
from model.profiles import Flags, Profile, get_profile
from model.state import State, initial_state


@dataclass
class System:
    profile: Profile
    flags: Flags
    bounds: Bounds = DEFAULT_BOUNDS
    faults: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    # with the calls only scenarios make (set_memory_* on any area, raw page writes, ...)
    scenario: bool = False

    @classmethod
    def build(cls, profile: str, bounds: Bounds = DEFAULT_BOUNDS, faults: bool = False,
              overrides: dict[str, Any] | None = None, scenario: bool = False) -> System:
        prof = get_profile(profile)
        ov = dict(overrides or {})
        return cls(prof, prof.flags.with_overrides(ov), bounds, faults, ov, scenario)

    def __post_init__(self) -> None:
        self.ctx = Ctx(self.bounds, self.flags, self.faults)
        self.instances: list[Instance] = all_instances(self.ctx, self.scenario)
        self.by_key = {(i.name, i.items): i for i in self.instances}

    def initial(self) -> State:
        return initial_state(self.bounds)

    def enabled(self, s: State) -> list[Instance]:
        return [i for i in self.instances if i.guard(s, self.ctx, CONCRETE)]

    def step(self, s: State, inst: Instance) -> State:
        return inst.effect(s, self.ctx, CONCRETE)

    def expected(self, invariant: str) -> str | None:
        """The declared history of this invariant, or None under overrides (no declaration)."""
        if self.overrides:
            return None
        return self.profile.expected(invariant, self.faults, self.bounds.nodes)
