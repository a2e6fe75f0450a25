"""What several test files share: traces and states built by stepping the concrete model."""

from __future__ import annotations

from typing import Any

from model.bounds import WIDE
from model.logic import CONCRETE
from model.state import State
from model.system import System
from search.traces.trace import Trace, find_instances, trace_from_steps

TAIL_STEPS = ["vmalloc(area=0, npages=4)", "vmalloc_to_page(ref=0, frame=1)",
              "set_page_mapping(ref=0)"]
STALE_STEPS = ["alloc_new_pack(prog=0, area=0, aligned=true, fail=false)",
               "bpf_prog_pack_alloc(prog=1, area=0, chunk=1)",
               "bpf_arch_text_copy(prog=0)",
               "bpf_prog_pack_free(prog=0, fail=false)"]


def make(profile: str, calls: list[str], invariant: str | None, engine: str = "test",
         overrides: dict[str, Any] | None = None, seed: int | None = 7) -> Trace:
    system = System.build(profile, bounds=WIDE, overrides=overrides)
    return trace_from_steps(system, find_instances(system, calls), invariant, engine, seed=seed)


def reach(system: System, calls: list[str]) -> State:
    """The state after `calls`, each checked to be enabled on the way."""
    s = system.initial()
    for inst in find_instances(system, calls):
        assert inst.guard(s, system.ctx, CONCRETE), f"{inst} is not enabled on the way"
        s = system.step(s, inst)
    return s


# A command as a shell starts it: SIGINT at its default and unblocked, whatever this test
# process inherited (the command keeps an ignored SIGINT ignored, as a background job's is).
RESET_SIGINT = ("import signal; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                "signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])")


def from_a_shell(*args: str) -> list[str]:
    """argv running `python ARGS` with SIGINT reset first (os.execv keeps the pid)."""
    import sys

    return [sys.executable, "-c",
            RESET_SIGINT + "; import os, sys; os.execv(sys.executable, [sys.executable, "
            "*sys.argv[1:]])", *args]

