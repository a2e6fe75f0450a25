"""Direct-map fragmentation (issue 10): the numbers mean something. Worst cases computed by
hand, the simulation never above the exact worst case, z3's optimum equal to the
adversary's, the kernel's design changes that cut splits cut them in the model, and the
command's table, JSON, plot and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import search.cli
from model.placement import (
    Event,
    Machine,
    Workload,
    check_placement,
    design,
    events,
    module_design,
    split_regions,
    trampoline_design,
    vmalloc_rebuilds,
)
from model.profiles import PROFILES
from search.engines.fragmentation import (
    greedy_worst,
    simulate,
    simulate_levels,
    summary,
    worst_case,
)

M = Machine(leaves=1024)


def _worst(profile: str, load: int, churn: int = 0, m: Machine = M, prog_size: int = 512) -> int:
    w = worst_case(design(PROFILES[profile].flags, prog_size, m), Workload(load, churn), m)
    assert w.status == "exact" and w.value is not None, w
    return w.value


def test_worst_cases_by_hand() -> None:
    # one program with its own module_alloc image: its page splits one leaf
    assert _worst("v5.2", 1) == 1
    # N programs, N images, N leaves at worst (1024 leaves: room for all)
    assert _worst("v5.2", 8) == 8
    # unload/load pairs: each new image may land in a leaf nobody split yet
    assert _worst("v5.2", 8, churn=8) == 16
    # N programs in one PMD-mapped 2 MiB pack split none (the pack changes its leaf whole)
    assert _worst("v5.18-rc1", 8) == 0 and _worst("v5.18-rc1", 5000) == 0
    # 4 KiB packs hold 8 programs of 512 bytes (64-byte chunks): 8 programs, one page
    assert _worst("v5.18", 8) == 1 and _worst("v5.18", 9) == 2
    # a PMD_SIZE pack on 4 KiB pages: its 512 pages may each split a leaf
    assert _worst("v6.0", 1) == 512
    # ... but never more leaves than the machine has
    assert _worst("v6.0", 1, m=Machine(leaves=4)) == 4
    # nothing loaded, nothing split
    assert all(_worst(p, 0) == 0 for p in ("v5.2", "v5.18", "v5.18-rc1", "v6.0"))


@pytest.mark.parametrize("profile", ["v5.2", "v5.18", "v5.18-rc1", "v6.0"])
@pytest.mark.parametrize(("load", "churn"), [(1, 0), (8, 0), (8, 8), (40, 30)])
def test_simulation_never_exceeds_the_worst_case(profile: str, load: int, churn: int) -> None:
    m = Machine(leaves=64)
    d = design(PROFILES[profile].flags, 512, m)
    worst = worst_case(d, Workload(load, churn), m)
    assert worst.value is not None
    runs = simulate(d, Workload(load, churn), m, 50, seed=1)
    assert max(runs) <= worst.value
    assert summary(runs)["median"] <= summary(runs)["p90"] <= worst.value


@pytest.mark.parametrize(("profile", "load", "churn", "leaves"),
                         [("v5.2", 3, 2, 8), ("v5.18", 20, 5, 4), ("v6.0", 1, 0, 16),
                          ("v5.18-rc1", 3, 1, 4), ("v5.2", 6, 0, 4)])
def test_z3_agrees_with_the_adversary(profile: str, load: int, churn: int, leaves: int) -> None:
    """The solver's optimum (asked directly) equals the greedy adversary's where that meets
    the upper bound, and its witness is a placement the machine allows."""
    m = Machine(leaves=leaves, frames=512)
    d = design(PROFILES[profile].flags, 512, m)
    w = Workload(load, churn)
    solved = worst_case(d, w, m, greedy=False)
    value, bound, placement = greedy_worst(d, w, m)
    assert solved.status == "exact" and solved.value == value == bound
    assert check_placement(solved.witness, events(d, w), m) is None
    assert check_placement(placement, events(d, w), m) is None


def test_a_tight_machine_bounds_what_the_solver_finds() -> None:
    """Two leaves of two frames, three programs with their own page at once: at most two
    leaves split, and z3 proves no placement does better than the adversary."""
    m = Machine(leaves=2, frames=2)
    d = design(PROFILES["v5.2"].flags, 512, m)
    assert worst_case(d, Workload(3), m, greedy=False).value == 2
    with pytest.raises(ValueError, match="no free frame"):
        simulate(d, Workload(5), m, 1, 0)


def test_the_kernels_design_changes_cut_splits_in_the_model() -> None:
    """bpf_prog_pack (5.18) replaced one image per program: fewer splits; packs mapped by a
    PMD (5.18-rc1) split none; 6.0's PMD_SIZE packs on 4 KiB pages, which 559089e0a93d
    left without VM_ALLOW_HUGE_VMAP, cost more than a few per-program images."""
    for load in (8, 64):
        per_program, pack4k = _worst("v5.2", load), _worst("v5.18", load)
        assert _worst("v5.18-rc1", load) < pack4k < per_program
    assert _worst("v6.0", 8) > _worst("v5.2", 8)


def test_simulation_is_deterministic() -> None:
    d = design(PROFILES["v6.0"].flags, 512, M)
    a = simulate(d, Workload(1), M, 20, seed=7)
    assert a == simulate(d, Workload(1), M, 20, seed=7)
    assert a != simulate(d, Workload(1), M, 20, seed=8)


def test_command_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "frag.png"
    code = search.cli.main(["fragmentation", "--load", "4", "--runs", "20", "--json",
                            "--plot", str(png)])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    rows = {r["profile"]: r for r in doc["results"]}
    assert list(rows) == ["v5.2", "v5.18", "v5.18-rc1", "v6.0"]
    assert rows["v5.2"]["worst"] == {"value": 4, "status": "exact"}
    assert rows["v5.18-rc1"]["worst"]["value"] == 0 and rows["v6.0"]["worst"]["value"] == 512
    for r in rows.values():  # every figure of the table is in the JSON
        assert set(r) >= {"design", "units_allocated", "worst", "typical", "small_fraction", "series"}
        assert [s["load"] for s in r["series"]] == [0, 1, 2, 3, 4]
        assert r["typical"]["median"] <= r["worst"]["value"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [png]  # no temporary file left


def test_command_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = search.cli.main(["fragmentation", "--profile", "v5.18", "--load", "16", "--runs", "5"])
    out, _ = capsys.readouterr()
    assert code == 0
    (row,) = [line for line in out.splitlines() if line.startswith("v5.18 ")]
    assert "4 KiB packs" in row and row.split()[4] == "2"  # units, then worst: 2 pages


@pytest.mark.parametrize("argv", [["--profile", "v9.9"], ["--load", "-1"], ["--leaves", "0"],
                                  ["--runs", "x"], ["--profile", "v5.2", "--leaves", "1",
                                                    "--load", "600"]])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = search.cli.main(["fragmentation", *argv])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err


def _module_worst(profile: str, load: int, churn: int = 0, pages: int = 4,
                  greedy: bool = True, m: Machine = M) -> int:
    d = module_design(PROFILES[profile].flags, pages, m)
    w = worst_case(d, Workload(load, churn), m, greedy=greedy)
    assert w.status == "exact" and w.value is not None, w
    return w.value


def test_module_text_worst_cases_by_hand() -> None:
    # module_alloc / execmem_alloc: every text page made RO may split its own leaf
    assert _module_worst("v6.10", 1) == 4 and _module_worst("v6.10", 20) == 80
    # 6.13-rc1's ROX cache takes whole huge pages out of the direct map: nothing splits
    assert _module_worst("v6.13-rc1", 200) == 0
    # 5.18-rc1 maps a PMD_SIZE module with a PMD, one module to a leaf, and splits it
    assert _module_worst("v5.18-rc1", 3, pages=M.frames) == 3
    # 6.15's temp RW splits the alias leaf of each cache huge page in use: 200 modules of
    # 4 pages fill two huge pages of 512 frames
    assert _module_worst("v6.15", 1) == 1 and _module_worst("v6.15", 200) == 2
    # ... and the solver, asked directly (on a machine of 16 leaves), agrees
    small = Machine(leaves=16)
    assert _module_worst("v6.15", 200, greedy=False, m=small) == 2
    assert _module_worst("v6.10", 3, churn=2, greedy=False, m=small) == 16


def test_command_for_modules(capsys: pytest.CaptureFixture[str]) -> None:
    code = search.cli.main(["fragmentation", "--kind", "modules", "--load", "3", "--runs", "5",
                            "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["workload"]["kind"] == "modules"
    worst = {r["profile"]: r["worst"]["value"] for r in doc["results"]}
    assert worst == {"v6.10": 12, "v6.13-rc1": 0, "v6.15": 1, "v6.17": 1}


def _worst3(d_kind: str, profile: str, load: int, churn: int = 0, m: Machine = M,
            greedy: bool = True) -> int:
    maker = {"bpf": design, "modules": module_design, "trampolines": trampoline_design}[d_kind]
    d = maker(PROFILES[profile].flags, 4 if d_kind == "modules" else 512, m)
    w = worst_case(d, Workload(load, churn), m, greedy=greedy, level=3)
    assert w.status == "exact" and w.value is not None, w
    return w.value


GB = Machine(leaves=1024, gib=512)  # 2 GiB mapped by two 1 GiB pages


def test_one_gib_pages_by_hand() -> None:
    """Any change to a leaf inside a 1 GiB page splits that page (direct_map_level3_splits),
    even a whole 2 MiB leaf changed in place: the PMD-mapped pack of 5.18-rc1 splits no
    2 MiB leaf but one 1 GiB page; and nothing splits a 1 GiB page the machine lacks."""
    assert _worst3("bpf", "v5.18-rc1", 1, m=GB) == 1 and _worst("v5.18-rc1", 1, m=GB) == 0
    assert _worst3("bpf", "v5.2", 1, m=GB) == 1 and _worst3("bpf", "v5.2", 8, m=GB) == 2
    assert _worst3("bpf", "v6.0", 1, m=GB) == 2  # 512 pages over both 1 GiB pages
    assert _worst3("modules", "v6.13-rc1", 5, m=GB) == 1  # one cache huge page taken out
    assert _worst3("bpf", "v5.2", 8, m=M) == 0  # gib=0: no 1 GiB pages
    assert (M.regions, Machine(leaves=5, gib=2).regions) == (0, 3)  # the last one partial
    assert _worst3("bpf", "v5.2", 0, m=GB) == 0
    # powerpc 5.13 never touches its linear map
    assert _worst3("bpf", "v5.13-powerpc", 8, m=GB) == 0


@pytest.mark.parametrize(("kind", "profile", "load", "churn"),
                         [("bpf", "v5.2", 3, 2), ("bpf", "v5.18-rc1", 3, 1),
                          ("bpf", "v6.0", 1, 0), ("modules", "v6.15", 3, 0)])
def test_z3_agrees_with_the_adversary_on_one_gib_pages(kind: str, profile: str, load: int,
                                                       churn: int) -> None:
    """Six leaves in three 1 GiB pages of two leaves each: z3's optimum (asked directly)
    equals the adversary's, which meets the bound; a partial last 1 GiB page too."""
    for m in (Machine(leaves=6, frames=512, gib=2), Machine(leaves=5, frames=512, gib=2)):
        solved = _worst3(kind, profile, load, churn, m=m, greedy=False)
        assert solved == _worst3(kind, profile, load, churn, m=m) <= m.regions


def test_simulation_never_exceeds_the_level3_worst_case() -> None:
    """Two 1 GiB pages, of three leaves and of one, two order-9 packs alive at once: z3's
    optimum is a placement the machine allows, and no random placement splits more."""
    m = Machine(leaves=4, frames=512, gib=3)
    d = design(PROFILES["v5.18-rc1"].flags, 512, m)
    w = Workload(2 * d.programs)  # two packs
    solved = worst_case(d, w, m, greedy=False, level=3)
    assert solved.value == 2 and check_placement(solved.witness, events(d, w), m) is None
    runs = simulate_levels(d, w, m, 40, seed=3)
    assert max(l3 for _, l3 in runs) <= solved.value


def test_trampolines_by_hand() -> None:
    """5.5 to 6.0: a page each made executable with set_memory_x only, which skips the
    alias (_NX-only changes): nothing splits; 6.1: a page each made RO: one leaf each;
    6.8: trampolines are pack chunks, the programs' design."""
    d = trampoline_design(PROFILES["v5.19"].flags, 512, M)
    assert worst_case(d, Workload(8, 8), M).value == 0
    # nor a 1 GiB page, wherever they land (mutation testing: counting the 1 GiB pages of
    # every unit allocated, not only those that change the alias, went unnoticed)
    gib = Machine(leaves=1024, gib=512)
    assert set(simulate_levels(trampoline_design(PROFILES["v5.19"].flags, 512, gib),
                               Workload(8, 8), gib, 5, seed=1)) == {(0, 0)}
    assert worst_case(trampoline_design(PROFILES["v6.1"].flags, 512, M), Workload(8, 8), M).value == 16
    assert trampoline_design(PROFILES["v6.8"].flags, 512, M) == design(PROFILES["v6.8"].flags, 512, M)
    with pytest.raises(ValueError, match="no BPF trampolines"):
        trampoline_design(PROFILES["v5.2"].flags, 512, M)


def test_image_pages_and_the_designs_that_never_change_the_direct_map() -> None:
    """A program's image is its size in pages, rounded up, in every design; the direct map
    is never changed without set_memory_* or without alias processing (mutation testing:
    the rounding at exact multiples of a page, and `and` -> `or`, went unchecked)."""
    for profile in ("v5.2", "v5.13-powerpc"):
        flags = PROFILES[profile].flags
        assert [design(flags, n, M).pack_pages for n in (4096, 4097, 1)] == [1, 2, 1]
    for off in ({"cpa_alias": False}, {"set_memory": False}):
        d = design(PROFILES["v5.2"].flags.with_overrides(off), 512, M)
        assert d.name == "direct map never changed" and not d.changes_alias, off
    assert design(PROFILES["v5.2"].flags, 512, M).changes_alias


def test_events_regions_and_placements_by_hand() -> None:
    """Three rules mutation testing found unchecked: churn beyond the load unloads the
    programs the churn itself loaded (each load a new program); two changed leaves in one
    1 GiB page split it once; a 4 KiB page is never placed in a leaf an order-9 block holds,
    nor one more page in a leaf than it has frames."""
    d = trampoline_design(PROFILES["v6.1"].flags, 512, M)  # a page per trampoline
    got = [(e.unit, e.alloc) for e in events(d, Workload(1, 3))]
    assert got == [(0, True), (0, False), (1, True), (1, False), (2, True), (2, False), (3, True)]
    m = Machine(leaves=4, frames=2, gib=2)
    evs = events(trampoline_design(PROFILES["v6.1"].flags, 2, m), Workload(2))
    assert len(split_regions({0: [0], 1: [1]}, evs, m)) == 1
    assert len(split_regions({0: [0], 1: [2]}, evs, m)) == 2
    page, block = Event(0, True, 1, False, True), Event(1, True, 2, True, False)
    assert check_placement({0: [0], 1: [1]}, [block, page], m) is None
    assert "no free frame" in (check_placement({0: [1], 1: [1]}, [block, page], m) or "")
    three = [Event(u, True, 1, False, True) for u in range(3)]
    assert check_placement({0: [0], 1: [0], 2: [1]}, three, m) is None
    assert "no free frame" in (check_placement({0: [0], 1: [0], 2: [0]}, three, m) or "")


def test_vmalloc_rebuilds_follow_the_collapse_flags() -> None:
    """6.15 rebuilds the cache huge page's vmalloc PMD after each load's temp RW window,
    6.17 after each unload's RW/INT3/ROX too; 6.13-rc1 never collapses. None of it is a
    direct-map collapse."""
    w = Workload(5, 3)
    got = {}
    for p in ("v6.13-rc1", "v6.15", "v6.17", "v6.10"):
        got[p] = vmalloc_rebuilds(module_design(PROFILES[p].flags, 4, M), w)
    assert got == {"v6.13-rc1": 0, "v6.15": 8, "v6.17": 11, "v6.10": 0}
    # loads and unloads add up (mutation testing: 8 ^ 3 is 8 + 3, so `+` -> `^` went unseen)
    assert vmalloc_rebuilds(module_design(PROFILES["v6.17"].flags, 4, M), Workload(2, 3)) == 8


def test_command_trampolines_and_no_gbpages(capsys: pytest.CaptureFixture[str]) -> None:
    code = search.cli.main(["fragmentation", "--kind", "trampolines", "--load", "3", "--runs",
                            "5", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    rows = {r["profile"]: r for r in doc["results"]}
    assert list(rows) == ["v5.19", "v6.1", "v6.8"]
    assert rows["v6.1"]["worst"]["value"] == 3 and rows["v6.1"]["level3"]["worst"]["value"] == 2
    # a trampoline page holds one trampoline, made executable or RO (mutation testing: the
    # JSON's programs_per_unit of the 5.5 to 6.0 design went unchecked)
    assert [rows[p]["design"]["programs_per_unit"] for p in ("v5.19", "v6.1")] == [1, 1]
    assert [rows[p]["design"]["changes_alias"] for p in ("v5.19", "v6.1")] == [False, True]
    assert doc["machine"]["leaves_per_1gib_page"] == 512
    code = search.cli.main(["fragmentation", "--profile", "v5.18-rc1", "--load", "3", "--runs",
                            "5", "--json", "--no-gbpages"])
    out, _ = capsys.readouterr()
    (row,) = json.loads(out)["results"]
    assert code == 0 and row["level3"]["worst"]["value"] == 0 and row["worst"]["value"] == 0
    code = search.cli.main(["fragmentation", "--kind", "trampolines", "--profile", "v5.2"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "v5.2" in err and "trampolines" in err


# the safety model's actions that allocate and lock each kind of executable memory
_SAFETY_ACTIONS = {
    "bpf": {"bpf_jit_binary_alloc", "bpf_int_jit_compile", "set_memory_ro", "set_memory_x",
            "bpf_jit_binary_pack_alloc", "alloc_new_pack", "bpf_prog_pack_alloc",
            "bpf_arch_text_copy"},
    "trampolines": {"bpf_trampoline_update"},
    "modules": {"move_module", "set_memory_ro", "set_memory_x", "module_enable_text_rox",
                "execmem_cache_populate", "module_memory_alloc", "module_memory_restore_rox",
                "post_relocation"},
}


def _safety_facts(profile: str, names: set[str], npages: int) -> tuple[bool, bool, bool]:
    """Every state the safety model reaches in four steps of `names` (instances of `npages`
    pages where the action takes a size): does a leaf split, does an alias change, is an
    area mapped huge?"""
    from model.logic import CONCRETE
    from model.system import System

    system = System.build(profile)
    insts = [i for i in system.instances
             if i.name in names and dict(i.items).get("npages", npages) == npages]
    seen = {system.initial()}
    frontier = list(seen)
    for _ in range(4):
        frontier = [t for s in frontier for i in insts if i.guard(s, system.ctx, CONCRETE)
                    for t in [system.step(s, i)] if t not in seen]
        seen.update(frontier)
    return (any(any(s.dmap.split) for s in seen),
            any(not (w and p) for s in seen for w, p in zip(s.dmap.w, s.dmap.present, strict=True)),
            any(any(s.areas.huge) for s in seen))


@pytest.mark.parametrize(("kind", "full"), [("bpf", False), ("trampolines", False),
                                            ("modules", False), ("modules", True)])
def test_placement_designs_agree_with_the_safety_model(kind: str, full: bool) -> None:
    """The placement model takes its designs from the profile flags; the safety model's own
    actions must agree with it, on every profile: whether a unit splits its leaf, whether
    it changes the direct-map alias at all, whether it is mapped huge. `full`: an allocation
    of one whole leaf (hpage pages in the safety scope, 512 here), else of one page
    (programs and trampolines are under a page; packs have their own size)."""
    maker = {"bpf": design, "modules": module_design, "trampolines": trampoline_design}[kind]
    checked = 0
    for name, prof in PROFILES.items():
        try:
            d = maker(prof.flags, M.frames if full else (4 if kind == "modules" else 512), M)
        except ValueError:  # no trampolines in this kernel
            continue
        names = _SAFETY_ACTIONS["bpf" if prof.flags.bpf_trampoline == "pack" and
                                kind == "trampolines" else kind]
        got = _safety_facts(name, names, 2 if full else 1)
        unit_splits = d.changes_alias and (d.huge_splits if d.huge else True)
        assert got == (unit_splits, d.changes_alias, d.huge), (name, d.name, got)
        checked += 1
    assert checked >= 10
