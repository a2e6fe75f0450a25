"""Trace files: round trip, atomic and deduplicated save, strict load, replay."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import TAIL_STEPS, make

from search.result import InternalError
from search.traces.trace import (
    FORMAT_VERSION,
    Trace,
    TraceError,
    load,
    replay,
    save,
)


def test_round_trip(tmp_path: Path, tail: Trace, stale: Trace) -> None:
    for t in (tail, stale):
        p = save(t, tmp_path)
        assert p.name.endswith(f"__{t.invariant}__d{t.depth}.itf.json")
        assert load(p) == t


def test_file_is_itf(tmp_path: Path, tail: Trace) -> None:
    doc = json.loads(save(tail, tmp_path).read_text())
    assert doc["#meta"]["format"] == "ITF"
    assert doc["#meta"]["format-version"] == FORMAT_VERSION
    assert doc["vars"] == ["pages", "dmap", "areas", "progs", "refs", "oops"]
    assert doc["states"][0]["#meta"] == {"index": 0, "action": None, "params": None}
    assert doc["states"][3]["#meta"] == {"index": 3, "action": "set_page_mapping",
                                         "params": {"ref": 0}}
    assert doc["states"][3]["pages"]["mapping"][1] == 2


def test_file_name(tmp_path: Path, tail: Trace) -> None:
    assert save(tail, tmp_path).name == "v5.18-rc1__no_tail_as_base__d3.itf.json"


def test_same_trace_saved_once(tmp_path: Path, tail: Trace) -> None:
    first = save(tail, tmp_path)
    assert save(tail, tmp_path) == first
    # found again by another engine with another seed: still the same trace
    again = dataclasses.replace(tail, engine="bmc", seed=None)
    assert save(again, tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


def test_different_trace_same_name_gets_suffix(tmp_path: Path, tail: Trace) -> None:
    other = make("v5.18-rc1", ["vmalloc(area=0, npages=4)", "vmalloc_to_page(ref=0, frame=2)",
                               "set_page_mapping(ref=0)"], "no_tail_as_base")
    a, b = save(tail, tmp_path), save(other, tmp_path)
    assert a != b and b.name.startswith("v5.18-rc1__no_tail_as_base__d3__")
    assert save(other, tmp_path) == b
    assert load(b) == other


def test_no_partial_file_on_error(tmp_path: Path, tail: Trace,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "link", boom)
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save(tail, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unencodable_trace_writes_nothing(tmp_path: Path, tail: Trace) -> None:
    bad = dataclasses.replace(tail, overrides={"x": object()})
    with pytest.raises(TypeError):
        save(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_trace_from_steps_rejects_disabled_step() -> None:
    with pytest.raises(InternalError):
        make("v5.18-rc1", TAIL_STEPS[1:], "no_tail_as_base")


# ---------------------------------------------------------------- corruption


def corrupt(tmp_path: Path, t: Trace, edit: Any) -> Path:
    p = save(t, tmp_path)
    doc = json.loads(p.read_text())
    edit(doc)
    p.write_text(json.dumps(doc))
    return p


def set_(path: list[Any], value: Any) -> Any:
    def edit(doc: Any) -> None:
        for k in path[:-1]:
            doc = doc[k]
        doc[path[-1]] = value

    return edit


def delete(path: list[Any]) -> Any:
    def edit(doc: Any) -> None:
        for k in path[:-1]:
            doc = doc[k]
        del doc[path[-1]]

    return edit


CORRUPTIONS = {
    "wrong version": (set_(["#meta", "format-version"], 99), "format version 99"),
    "not ITF": (set_(["#meta", "format"], "TLA"), "not 'ITF'"),
    "missing key": (delete(["#meta", "engine"]), "lacks key 'engine'"),
    "extra key": (set_(["#meta", "colour"], "red"), "unknown key 'colour'"),
    "unknown profile": (set_(["#meta", "profile"], "v9.9"), "unknown profile"),
    "unknown flag": (set_(["#meta", "flags", "turbo"], True), "unknown flag 'turbo'"),
    "unknown override": (set_(["#meta", "overrides"], {"turbo": True}), "unknown flag 'turbo'"),
    "flags disagree": (set_(["#meta", "flags", "huge_backing"], "split"), "huge_backing"),
    "bad bounds": (set_(["#meta", "bounds", "frames"], 15), "frames=15"),
    "unknown invariant": (set_(["#meta", "invariant"], "nope"), "unknown invariant"),
    "unknown action": (set_(["states", 2, "#meta", "action"], "frobnicate"),
                       "unknown action 'frobnicate'"),
    "unknown parameter": (set_(["states", 1, "#meta", "params", "colour"], 1),
                          "unknown parameter 'colour'"),
    "missing parameter": (delete(["states", 1, "#meta", "params", "npages"]),
                          "lacks parameter 'npages'"),
    "param out of bounds": (set_(["states", 1, "#meta", "params", "area"], 9),
                            "area=9 of vmalloc is out of bounds"),
    "param wrong type": (set_(["states", 1, "#meta", "params", "npages"], "4"),
                         "npages=\"4\" of vmalloc is out of bounds"),
    "tampered state": (set_(["states", 3, "pages", "mapping", 1], 1),
                       "pages.mapping[1] is recorded as TAIL_MAPPING"),
    "wrong shape": (set_(["states", 2, "pages", "kind"], [0, 1]), "has 2 entries"),
    "wrong leaf type": (set_(["states", 2, "pages", "lru", 0], 0), "must be true or false"),
    "bad index": (set_(["states", 2, "#meta", "index"], 5), "#meta.index 5"),
    "steps out of order": (set_(["states", 1, "#meta"],
                                {"index": 1, "action": "vmalloc_to_page",
                                 "params": {"ref": 0, "frame": 1}}), "not enabled"),
    "empty": (set_(["states"], []), "non-empty"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corruption_is_one_line(tmp_path: Path, tail: Trace, kind: str) -> None:
    edit, expected = CORRUPTIONS[kind]
    p = corrupt(tmp_path, tail, edit)
    with pytest.raises(TraceError) as err:
        load(p)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(p.name + ": ")
    assert expected in msg


def test_bool_param_is_not_an_int(tmp_path: Path, stale: Trace) -> None:
    p = corrupt(tmp_path, stale, set_(["states", 1, "#meta", "params", "fail"], 0))
    with pytest.raises(TraceError, match="fail=0 of alloc_new_pack is out of bounds"):
        load(p)


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2", '{"a": 1, "a": 2}', "NaN"])
def test_not_json(tmp_path: Path, text: str) -> None:
    p = tmp_path / "x.itf.json"
    p.write_text(text)
    with pytest.raises(TraceError) as err:
        load(p)
    assert str(err.value).startswith("x.itf.json: ") and "\n" not in str(err.value)


def test_not_utf8_and_missing(tmp_path: Path) -> None:
    p = tmp_path / "x.itf.json"
    p.write_bytes(b"\xff\xfe{")
    with pytest.raises(TraceError, match="not UTF-8"):
        load(p)
    with pytest.raises(TraceError, match="cannot read"):
        load(tmp_path / "missing.itf.json")


# ---------------------------------------------------------------- replay


def test_replay_reproduces(tail: Trace, stale: Trace) -> None:
    for t in (tail, stale):
        r = replay(t)
        assert r.reproduced and r.diverged_at is None and r.recorded_config
        assert len(r.narration) == t.depth


def test_tail_trace_under_v518(tail: Trace) -> None:
    r = replay(tail, "v5.18")
    assert not r.reproduced and not r.recorded_config
    assert r.diverged_at == 1  # the vmalloc is no longer huge
    assert "no_tail_as_base holds" in r.reason
    assert "areas.huge[0]: now false, recorded true" in r.reason
    assert "pages.kind[1]: now base, recorded tail" in r.reason


def test_flag_override_on_replay(tail: Trace) -> None:
    assert not replay(tail, overrides={"huge_backing": "split"}).reproduced
    assert replay(tail, overrides={"pack_size": "page"}).reproduced


def test_step_missing_under_other_profile(stale: Trace) -> None:
    r = replay(stale, "v5.2")
    assert not r.reproduced and r.diverged_at == 1
    assert "does not exist" in r.reason


def test_stale_trace_under_v519(stale: Trace) -> None:
    r = replay(stale, "v5.19")
    assert not r.reproduced and r.diverged_at == 4
    assert "pages.content[0]: now trap, recorded code" in r.reason


def test_disabled_step_names_the_conjunct(tail: Trace) -> None:
    # drop the vmalloc: vmalloc_to_page finds no vmalloc area
    t = dataclasses.replace(tail, steps=tail.steps[1:],
                            states=(tail.states[0], *tail.states[2:]))
    r = replay(t)
    assert not r.reproduced and r.diverged_at == 1
    assert "disabled" in r.reason and "OWN_VMALLOC" in r.reason


def test_earlier_violations_are_reported_not_failures(stale: Trace) -> None:
    """Unfilled packs make the first step violate no_exec_uninit under 5.18-rc1: replay
    reports it on the way, and the recorded violation still reproduces at its step."""
    r = replay(stale, "v5.18-rc1")
    assert r.reproduced and r.diverged_at is None
    assert dict(r.violations) == {"no_exec_uninit": 1, "no_stale_exec": 4}
    assert "no_exec_uninit after step 1" in r.reason


def test_same_invariant_earlier_is_reported(stale: Trace) -> None:
    """A trace whose own invariant fails before its last step still reproduces, saying so."""
    import dataclasses

    longer = dataclasses.replace(stale, steps=(*stale.steps, stale.steps[-1]),
                                 states=(*stale.states, stale.states[-1]))
    r = replay(longer)
    assert not r.reproduced  # the repeated free is not the recorded step: it is disabled
    assert ("no_stale_exec", 4) in r.violations
