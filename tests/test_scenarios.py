"""Scenarios: the library's expected verdicts, the file format's errors, the `run` command's
exit codes, BMC over `*` and interleaving, and the catalog written as calls."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model.bounds import Bounds
from model.system import System
from search.engines.scenarios import HOLDS, VIOLATED, run
from search.scenario_cli import main as run_main
from search.traces.itf import load as load_trace
from search.traces.scenario_file import from_steps, load, parse

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "scenarios").glob("*.calls"))
CATALOG = sorted((ROOT / "counterexamples").glob("*.itf.json"))


def _system(sc, profile: str, **kw) -> System:
    return System.build(profile, bounds=Bounds.parse(sc.bounds or "small"), faults=bool(sc.faults),
                        scenario=True, **kw)


def test_library_is_real_code() -> None:
    """At least ten code paths, each citing the kernel source it was written from."""
    assert len(LIBRARY) >= 10
    for path in LIBRARY:
        text = path.read_text()
        assert re.search(r"[\w/]+\.[ch]\b", text), f"{path.name} names no kernel source file"
        assert re.search(r"\b[56]\.\d+", text), f"{path.name} names no kernel version"
        sc = load(str(path))
        assert sc.expects, f"{path.name} declares no expected verdicts"


def _expectations() -> list:
    return [pytest.param(p, e, id=f"{p.stem}-{e.profile}") for p in LIBRARY for e in load(str(p)).expects]


@pytest.mark.parametrize(("path", "expect"), _expectations())
def test_library_verdicts(path: Path, expect) -> None:
    sc = load(str(path))
    out = run(sc, _system(sc, expect.profile))
    got = sorted((v.invariant, v.call) for v in out.violated)
    assert got == sorted(expect.violated), (path.name, expect.profile, got)
    assert (out.impossible[0] if out.impossible else None) == expect.impossible


def test_library_has_a_correct_tail_user_and_a_protocol_breaker() -> None:
    by_name = {p.stem: load(str(p)) for p in LIBRARY}
    # af_packet maps compound tails with vm_insert_page: correct, never flagged
    rc1 = run(by_name["af_packet_compound_ring"], _system(by_name["af_packet_compound_ring"], "v5.18-rc1"))
    assert all(v.status == HOLDS for v in rc1.verdicts.values())
    # ftrace's boot path: X before RO, then a write through the writable mapping
    ft = by_name["ftrace_trampoline_boot"]
    assert run(ft, _system(ft, "v5.19")).verdicts["wx"].status == VIOLATED


def test_fbdev_crash_is_reported_at_free_time() -> None:
    """The 2022 report: free_tail_pages_check finds the third tail's mapping corrupted."""
    sc = load(str(ROOT / "scenarios" / "fbdev_defio_cleanup.calls"))
    out = run(sc, _system(sc, "v5.18-rc1"))
    from model.state import BAD_TAIL_MAPPING

    assert (len(sc.calls), 3, BAD_TAIL_MAPPING) in out.reports
    assert run(sc, _system(sc, "v5.18")).reports == []


# ---- the command -------------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "s.calls") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_run_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    safe = str(ROOT / "scenarios" / "bpf_jit_per_program.calls")
    assert run_main([safe, "--profile", "v5.19"]) == 0
    assert "holds" in capsys.readouterr().out
    bad = str(ROOT / "scenarios" / "piggin_reproducer.calls")
    assert run_main([bad, "--profile", "v5.18-rc1"]) == 12
    out = capsys.readouterr().out
    assert "no_tail_as_base broken by call 3" in out and "corrupted mapping in tail page" in out
    never = _write(tmp_path, "p = vmalloc_to_page(addr=1, index=0)\n")
    assert run_main([never, "--profile", "v5.19", "--profile", "v6.0"]) == 1
    out = capsys.readouterr().out
    assert "cannot happen" in out and "vmalloc_to_page returns NULL" in out
    # one profile where it can happen and one where it cannot: not exit 1
    pack = str(ROOT / "scenarios" / "bpf_prog_pack.calls")
    assert run_main([pack, "--profile", "v5.2", "--profile", "v5.19"]) == 0


def test_run_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = str(ROOT / "scenarios" / "kprobes_insn_page.calls")
    assert run_main([path, "--profile", "v5.19", "--json"]) == 12
    doc = json.loads(capsys.readouterr().out)
    (o,) = doc["outcomes"]
    assert o["profile"] == "v5.19" and o["bounds"]["hpage"] == 2
    assert o["results"]["no_exec_uninit"] == {"status": "violated", "call": 4, "detail": "",
                                              "steps": o["results"]["no_exec_uninit"]["steps"]}
    assert o["results"]["wx"]["status"] == "holds"


BAD_FILES = {
    "unknown call": ("vmalloc(npages=1)\nfrobnicate(1)\n", ":2: unknown call"),
    "unknown parameter": ("vmalloc(npages=1, colour=3)\n", ":1: vmalloc(npages=1, colour=3) fits no"),
    "value out of domain": ("vmalloc(npages=9)\n", ":1: npages=9 is outside the domain"),
    "malformed line": ("vmalloc(npages=1\n", ":1: not a call"),
    "bad value": ("vmalloc(npages=1.5)\n", ":1: bad value"),
    "unnamed object": ("vfree(fb)\n", ":1: fb is not named by an earlier call"),
    "wrong kind": ("fb = vmalloc(npages=1)\nput_page(fb)\n", ":2: fb is a area"),
    "empty file": ("# nothing\n\n", "no calls"),
    "late header": ("vmalloc(npages=1)\nprofile: v5.19\n", ":2: header 'profile:' after"),
    "unknown profile": ("profile: v9.9\nvmalloc(npages=1)\n", "unknown profile"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_scenario_files(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, needle = BAD_FILES[case]
    path = _write(tmp_path, text)
    assert run_main([path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err, err


def test_binary_and_huge_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "b.calls"
    binary.write_bytes(b"vmalloc(npages=1)\n\x00\x01\x02")
    huge = tmp_path / "h.calls"
    with open(huge, "wb") as fh:  # 100 MB, sparse: read only as far as the limit
        fh.truncate(100 * 2**20)
    latin = tmp_path / "l.calls"
    latin.write_bytes(b"# caf\xe9\nvmalloc(npages=1)\n")
    for path, needle in ((binary, "binary data"), (huge, "larger than"), (latin, ":1: not UTF-8"),
                         (tmp_path, "is a folder"), (tmp_path / "missing.calls", "no such file")):
        assert run_main([str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err


# ---- BMC: `*` and interleaving ----------------------------------------------------------------


def test_star_lets_the_engine_choose() -> None:
    """Clearing ->mapping is harmless on the head and fatal on a tail: `index=*` must find
    the tail."""
    sc = parse("bounds: hpage=4,areas=1,refs=1\nfb = vzalloc(npages=4)\n"
               "p = vmalloc_to_page(fb, index=*)\nclear_page_mapping(p)\n")
    rc1 = run(sc, _system(sc, "v5.18-rc1"))
    assert rc1.engine == "bmc"
    v = rc1.verdicts["no_tail_as_base"]
    assert v.status == VIOLATED and v.call == 3
    assert v.steps[1].params["index"] >= 1
    assert run(sc, _system(sc, "v5.18")).verdicts["no_tail_as_base"].status == HOLDS


INTERLEAVED = """# a driver looks up a page of a buffer another subsystem allocated
x = kvmalloc(npages=1)
p = vmalloc_to_page(addr=1, index=1)
set_page_index(p)
"""


def test_violation_only_with_interleaving() -> None:
    sc = parse(INTERLEAVED)
    alone = run(sc, _system(sc, "v5.18-rc1"))
    assert alone.impossible is not None and alone.impossible[0] == 2
    mixed = run(sc, _system(sc, "v5.18-rc1"), interleave=1)
    v = mixed.verdicts["no_tail_as_base"]
    assert v.status == VIOLATED and v.call == 3
    assert 0 in v.calls_at  # a step of the modelled kernel made the tail
    assert run(sc, _system(sc, "v5.18"), interleave=1).verdicts["no_tail_as_base"].status == HOLDS


def test_interleaved_steps_keep_off_the_scenarios_objects() -> None:
    """Other code never frees or writes what the scenario holds: a get_page on the
    scenario's own live buffer stays safe however the kernel's steps interleave."""
    sc = parse("b = vmalloc(npages=1)\np = vmalloc_to_page(b, index=0)\nget_page(p)\nput_page(p)\n")
    out = run(sc, _system(sc, "v5.19"), interleave=2)
    assert out.verdicts["refcount_sanity"].status == HOLDS


def test_faults_make_the_environment_choose() -> None:
    """With page-table allocation failures on, set_memory_ro may fail on the direct-map
    split and leave the alias writable while set_memory_x makes the page executable."""
    sc = parse("faults: on\nm = module_alloc(npages=1)\nbpf_fill_ill_insns(m)\n"
               "set_memory_ro(m, numpages=1)\nset_memory_x(m, numpages=1)\n")
    out = run(sc, _system(sc, "v5.19"))
    assert out.engine == "bmc"
    assert out.verdicts["wx"].status == VIOLATED and out.verdicts["wx"].call == 4
    calm = parse("m = module_alloc(npages=1)\nbpf_fill_ill_insns(m)\n"
                 "set_memory_ro(m, numpages=1)\nset_memory_x(m, numpages=1)\n")
    assert run(calm, _system(calm, "v5.19")).verdicts["wx"].status == HOLDS


# ---- the catalog, written as calls ------------------------------------------------------------


@pytest.mark.parametrize("path", CATALOG, ids=[p.name for p in CATALOG])
def test_catalog_as_calls(path: Path, tmp_path: Path) -> None:
    """The calls of every catalog trace, run as a scenario, break its invariant at its
    last call and not before."""
    t = load_trace(path)
    text = from_steps(list(t.steps), str(path), t.profile, t.bounds.as_dict(), t.faults,
                      t.overrides, comment=f"the calls of {path.name}")
    sc = parse(text, str(tmp_path / "c.calls"))
    out = run(sc, System.build(t.profile, bounds=t.bounds, faults=t.faults,
                               overrides=t.overrides, scenario=True))
    assert out.engine == "run" and out.impossible is None
    v = out.verdicts[t.invariant]
    assert v.status == VIOLATED and v.call == t.depth


# ---- traces and scenarios are interchangeable ---------------------------------------------------


def test_itf_without_states_is_computed() -> None:
    import json

    from search.traces.itf import loads

    path = ROOT / "counterexamples" / "v5.18-rc1__no_tail_as_base__d3.itf.json"
    doc = json.loads(path.read_text())
    for st in doc["states"]:
        for var in [v for v in st if v != "#meta"]:
            del st[var]
    bare = loads(json.dumps(doc))
    assert bare.states == load_trace(path).states
    # a state may not be half given
    doc["states"][1]["pages"] = {}
    with pytest.raises(ValueError):
        loads(json.dumps(doc))


def test_show_writes_calls_that_run_reproduces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from search.cli import main as cli_main

    trace = str(ROOT / "counterexamples" / "v5.18.y__no_stale_exec__d4.itf.json")
    assert cli_main(["show", trace, "--format", "calls"]) == 0
    calls = tmp_path / "t.calls"
    calls.write_text(capsys.readouterr().out)
    assert run_main([str(calls), "--quiet"]) == 12
    assert "call 4" in capsys.readouterr().out
    assert run_main([trace, "--quiet"]) == 12  # run takes the trace itself too
    assert "call 4" in capsys.readouterr().out


def test_replay_and_show_take_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    from search.cli import main as cli_main

    path = str(ROOT / "scenarios" / "kprobes_insn_page.calls")
    assert cli_main(["replay", path]) == 0
    assert "no_exec_uninit is violated after step 4" in capsys.readouterr().out
    assert cli_main(["replay", path, "--profile", "v5.1"]) == 1
    assert "set_vm_flush_reset_perms does not exist before 5.2" in capsys.readouterr().out
    assert cli_main(["show", path, "--slice"]) == 0
    assert "no_exec_uninit violated after 4 steps" in capsys.readouterr().out


def test_run_saves_the_witness_of_a_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    star = _write(tmp_path, "profile: v5.18-rc1\nbounds: hpage=4,areas=1,refs=1\n"
                            "fb = vzalloc(npages=4)\np = vmalloc_to_page(fb, index=*)\n"
                            "clear_page_mapping(p)\n")
    out = tmp_path / "out"
    out.mkdir()
    assert run_main([star, "--out", str(out), "--quiet"]) == 12
    (saved,) = out.glob("*.itf.json")
    t = load_trace(saved)
    assert t.invariant == "no_tail_as_base" and t.engine == "bmc" and t.depth == 3
    assert run_main([star, "--out", str(tmp_path / "missing")]) == 2
