"""Random simulation (TLC's -simulate): random walks over enabled instances."""

from __future__ import annotations

import random
from collections.abc import Iterator

from model.actions import Instance
from model.logic import CONCRETE
from model.state import State
from model.system import System


class Walker:
    """Uniform choice among the enabled instances of a state, by rejection sampling.

    Evaluating every guard of a state costs hundreds of guard calls; drawing instances
    at random until one is enabled costs a few dozen and draws from the same uniform
    distribution over enabled instances. After `patience` misses the state is examined
    exhaustively, so a deadlocked state is recognised as one.
    """

    def __init__(self, system: System, seed: int = 0, patience: int = 48,
                 cache_size: int = 1 << 16) -> None:
        self.system = system
        self.rng = random.Random(seed)
        self.patience = patience
        # walks restart from the initial state, so their first states recur constantly
        self.cache: dict[State, list[Instance]] = {}
        self.cache_size = cache_size

    def choose(self, s: State) -> Instance | None:
        sysm, ctx, insts = self.system, self.system.ctx, self.system.instances
        enabled = self.cache.get(s)
        if enabled is None:
            for _ in range(self.patience):
                inst = insts[self.rng.randrange(len(insts))]
                if inst.guard(s, ctx, CONCRETE):
                    return inst
            enabled = sysm.enabled(s)
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
            self.cache[s] = enabled
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
