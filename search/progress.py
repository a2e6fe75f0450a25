"""Progress of a long run: a one-line bar on a terminal; off a terminal (pipes, CI logs),
plain lines on stderr once the run has taken more than a few seconds, so that a long
check is seen to be alive without a bar's carriage returns filling a log."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """`enabled`: None picks by the streams (a bar when stdout and `stream` are terminals,
    else lines), False is silent, True forces the bar. `bar=False` never draws a bar (lines
    instead), for `--json` on a terminal. In line mode the first line comes after `quiet`
    seconds and the next ones at most every `every` seconds; `clock` is injectable so that
    tests need no wall clock."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None,
                 *, bar: bool = True, clock: Callable[[], float] = time.monotonic,
                 quiet: float = 5.0, every: float = 15.0) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:
            tty = _isatty(sys.stdout) and _isatty(self.stream)
            self.mode = "bar" if tty and bar else "lines"
        else:
            self.mode = "bar" if enabled else "off"
        self.enabled = self.mode == "bar"  # kept for callers that ask
        self.total = max(total, 1)
        self.done = 0
        self.clock = clock
        self.t0 = clock()
        self.quiet = quiet
        self.every = every
        self.last_line: float | None = None
        self.label = ""

    def note(self, label: str) -> None:
        self.label = label
        self._draw()

    def advance(self) -> None:
        self.done += 1
        self._draw()

    def _draw(self) -> None:
        if self.mode == "bar":
            self._bar()
        elif self.mode == "lines":
            self._line()

    def _bar(self) -> None:
        width = 24
        filled = int(width * min(self.done, self.total) / self.total)
        bar = "#" * filled + "-" * (width - filled)
        secs = self.clock() - self.t0
        line = f"\r[{bar}] {self.done}/{self.total} {secs:6.1f}s {self.label}"[:120]
        self._write(line.ljust(120))

    def _line(self) -> None:
        now = self.clock()
        secs = now - self.t0
        if secs < self.quiet or (self.last_line is not None and now - self.last_line < self.every):
            return
        self.last_line = now
        self._write(f"allocheck: progress: {self.done}/{self.total} results after {secs:.0f}s"
                    + (f"; {self.label}" if self.label else "")[:200] + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.mode = "off"  # a closed or full stderr must not stop the run

    def close(self) -> None:
        if self.mode == "bar":
            self._write("\r" + " " * 120 + "\r")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False
