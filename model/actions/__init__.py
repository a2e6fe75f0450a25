"""The action table: every kernel function the model can take a step with.

One module per subsystem; importing them registers their actions in REGISTRY."""

from __future__ import annotations

from model.actions import bpf_pack, code, drivers, vmalloc  # noqa: F401  (registration)
from model.actions.base import REGISTRY, Action, Ctx, Instance

ACTIONS: dict[str, Action] = {a.name: a for a in REGISTRY}


def all_instances(c: Ctx) -> list[Instance]:
    """Every (action, parameters) instance enabled by the profile's flags, in a fixed order."""
    out: list[Instance] = []
    for a in REGISTRY:
        out += a.instances(c)
    return out


__all__ = ["ACTIONS", "Action", "Ctx", "Instance", "all_instances"]
