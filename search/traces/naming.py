"""Naming state fields and values the way the kernel story does, and diffs of states.

`state_diff` lists the leaves two states disagree on; `format_changes` turns such a list
into short lines (`pages.kind[1..3]: free -> tail`); `format_call` spells an action call
like `str(Instance)`. `printable` and `one_line` make text from files and the command line
safe to print: a terminal never sees a control character from outside.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model.state import (
    BAD_REASONS,
    CONTENTS,
    MAPPINGS,
    OWNERS,
    PAGE_KINDS,
    PHASES,
    PROG_STATES,
    RW_COPIES,
    State,
    leaves,
)

# ---------------------------------------------------------------- text safe to print

ECHO_LIMIT = 80  # characters of an echoed value (a path, an argument, a field of a file)
LINE_LIMIT = 400  # characters of an error line
WORD_LIMIT = 120  # characters of one word of an error line: longer is an echo not cut yet
_LONG_WORD = re.compile(r"\S{" + str(WORD_LIMIT + 1) + ",}")


def _escape(ch: str) -> str:
    o = ord(ch)
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def printable(text: str, limit: int | None = None) -> str:
    """`text` with every character a terminal could act on written as an escape: control
    characters (escape sequences, newlines, tabs, carriage returns, C1 controls), format
    characters (bidirectional overrides), separators and lone surrogates become `\\x1b`,
    `\\u202e`, `\\udc80`. Cut to `limit` characters (escapes counted) with `...`."""
    if text.isprintable() and (limit is None or len(text) <= limit):
        return text
    out: list[str] = []
    n = 0
    for ch in text:
        piece = ch if ch.isprintable() else _escape(ch)
        if limit is not None and n + len(piece) > limit:
            out.append("...")
            break
        out.append(piece)
        n += len(piece)
    return "".join(out)


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """A value from outside as an error message quotes it: its repr, escaped and cut."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past Python's digit limit, deep nesting
        text = f"<{type(value).__name__} too large to show>"
    return printable(text, limit)


def one_line(message: str, limit: int = LINE_LIMIT) -> str:
    """An error message as one safe line: control characters escaped (so a newline in a
    path cannot forge a second line), any word longer than WORD_LIMIT cut, the whole cut
    to `limit` characters."""
    text = printable(message)
    text = _LONG_WORD.sub(lambda m: m.group(0)[: WORD_LIMIT - 3] + "...", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_call(name: str, params: dict[str, Any]) -> str:
    """`vmalloc(area=0, npages=4)`: the same spelling as `str(Instance)`."""
    args = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                     for k, v in params.items())
    return f"{name}({args})"


# ---------------------------------------------------------------- naming state fields

ENUM_NAMES: dict[str, tuple[str, ...]] = {
    "pages.kind": PAGE_KINDS,
    "pages.mapping": MAPPINGS,
    "pages.bad": BAD_REASONS,
    "pages.content": CONTENTS,
    "areas.owner": OWNERS,
    "areas.rw_copy": RW_COPIES,
    "areas.phase": PHASES,
    "progs.state": PROG_STATES,
}


@dataclass(frozen=True)
class Change:
    path: str  # dotted, as `leaves()` names it: "pages.mapping.1"
    old: Any
    new: Any


def field_of(path: str) -> tuple[str, int | None]:
    """"pages.mapping.1" -> ("pages.mapping", 1); "pages.bad_page" -> ("pages.bad_page", None)."""
    head, _, tail = path.rpartition(".")
    if tail.isdigit():
        return head, int(tail)
    return path, None


def leaf_label(path: str) -> str:
    """"pages.mapping.1" -> "pages.mapping[1]"."""
    fld, idx = field_of(path)
    return fld if idx is None else f"{fld}[{idx}]"


def value_label(path: str, v: Any) -> str:
    """A leaf's value as the kernel story names it: TAIL_MAPPING, tail, true."""
    if isinstance(v, bool):
        return "true" if v else "false"
    names = ENUM_NAMES.get(field_of(path)[0])
    if names is not None and isinstance(v, int) and 0 <= v < len(names):
        return names[v]
    return str(v)


def state_diff(a: State, b: State) -> list[Change]:
    """The leaves whose values differ, in state order."""
    return [Change(pa, va, vb)
            for (pa, va), (_, vb) in zip(leaves(a), leaves(b), strict=True) if va != vb]


def format_changes(changes: Sequence[Change], template: str = "{old} -> {new}",
                   limit: int | None = None) -> list[str]:
    """One line per run of consecutive indices of a field that changed the same way:
    `pages.kind[1..3]: free -> tail`."""
    groups: list[tuple[str, int | None, int | None, Change]] = []
    for ch in changes:
        fld, idx = field_of(ch.path)
        if groups:
            gf, lo, hi, first = groups[-1]
            if (gf == fld and idx is not None and hi is not None and idx == hi + 1
                    and (first.old, first.new) == (ch.old, ch.new)):
                groups[-1] = (gf, lo, idx, first)
                continue
        groups.append((fld, idx, idx, ch))
    lines = []
    for fld, lo, hi, ch in groups:
        where = fld if lo is None else (f"{fld}[{lo}]" if lo == hi else f"{fld}[{lo}..{hi}]")
        text = template.format(old=value_label(ch.path, ch.old), new=value_label(ch.path, ch.new))
        lines.append(f"{where}: {text}")
    if limit is not None and len(lines) > limit:
        return [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines
