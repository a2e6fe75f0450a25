"""A one-line progress display on a terminal, silent otherwise (pipes, CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = sys.stdout.isatty() and self.stream.isatty() if enabled is None else enabled
        self.total = max(total, 1)
        self.done = 0
        self.t0 = time.monotonic()
        self.label = ""

    def note(self, label: str) -> None:
        self.label = label
        self._draw()

    def advance(self) -> None:
        self.done += 1
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        secs = time.monotonic() - self.t0
        line = f"\r[{bar}] {self.done}/{self.total} {secs:6.1f}s {self.label}"[:120]
        self.stream.write(line.ljust(120))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()
