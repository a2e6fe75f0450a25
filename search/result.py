"""What an engine answers about one invariant of one configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VIOLATED, HOLDS, PROVED, UNKNOWN = "violated", "holds", "proved", "unknown"


class InternalError(RuntimeError):
    """An engine contradicted the concrete model (or another engine): never a result."""


@dataclass
class Result:
    invariant: str
    engine: str
    status: str  # violated | holds | proved | unknown
    depth: int  # of the shortest violation, or the depth checked (k for proved)
    steps: list[Any] = field(default_factory=list)  # Instances of the counterexample
    seconds: float = 0.0
    detail: str = ""  # why unknown, what was not checked, the induction step that failed
    certificate: str | None = None  # PROVED: the saved certificate file (`certify` re-checks it)
