"""Random simulation (TLC's -simulate): random walks over enabled instances."""

from __future__ import annotations

import random
from collections.abc import Iterator

from model.actions import Instance
from model.enabled import EnabledCache
from model.state import State
from model.system import System


class Walker:
    """Uniform choice among the enabled instances of each state, seeded.

    Instances are drawn at random until one is enabled (the same uniform distribution
    as drawing from the enabled set, at a fraction of the cost when many are enabled);
    after `patience` misses the state is examined exhaustively, so a state with few
    enabled instances, or none, is handled exactly. Guard results come from an
    `EnabledCache`, which re-evaluates only guards whose inputs the last step changed.
    """

    def __init__(self, system: System, seed: int = 0, patience: int = 32) -> None:
        self.system = system
        self.rng = random.Random(seed)
        self.patience = patience
        self.cache = EnabledCache(system.instances, system.ctx)

    def choose(self, s: State) -> Instance | None:
        n, insts, cache = len(self.system.instances), self.system.instances, self.cache
        for _ in range(self.patience):
            k = self.rng.randrange(n)
            if cache.is_enabled(k, s):
                return insts[k]
        enabled = cache.enabled(s)
        return enabled[self.rng.randrange(len(enabled))] if enabled else None

    def walk(self, length: int) -> Iterator[tuple[Instance, State]]:
        """One walk from the initial state: (instance, state after it) per step."""
        s = self.system.initial()
        for _ in range(length):
            inst = self.choose(s)
            if inst is None:
                return
            s = self.system.step(s, inst)
            yield inst, s
