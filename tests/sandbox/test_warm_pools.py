"""Both warm pools build the same sandbox: the agent keeps the same six capabilities (also the bounding set
of everything in the sandbox), runs hold none, and all of it sits under the syscall filter with no new
privileges."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from verifarm.sandbox import Limits, Program, Status, get_backend
from verifarm.sandbox.bwrap_backend import BwrapBackend, BwrapConfig
from verifarm.sandbox.selection import probe_backend

FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
STATUS = (
    "import json\nfor who in ('self', '1'):\n"
    "    lines = (line.split(':\\t') for line in open(f'/proc/{who}/status').read().splitlines())\n"
    f"    print(json.dumps({{key: value for key, value in lines if key in {FIELDS!r}}}))\n"
)
AGENT_CAPABILITIES = "00000000000000eb"  # chown, dac_override, fowner, kill, setgid, setuid
NONE = "0" * 16


@pytest.mark.parametrize("name", [pytest.param("docker", marks=pytest.mark.docker), "bwrap"])
def test_runs_hold_no_capability_and_the_agent_only_its_six(name: str):
    if probe_backend(name) is not None or not hasattr(get_backend(name), "sandboxes"):
        pytest.skip(f"no warm {name} pool here")
    result = get_backend(name).run(Program(("python3", "status.py"), files={"status.py": STATUS}), Limits())
    assert result.status is Status.OK, result
    run_status, agent_status = (json.loads(line) for line in result.stdout.decode().splitlines())
    assert run_status == {
        "CapInh": NONE,
        "CapPrm": NONE,
        "CapEff": NONE,
        "CapAmb": NONE,
        "CapBnd": AGENT_CAPABILITIES,
        "NoNewPrivs": "1",
        "Seccomp": "2",
    }
    assert agent_status == {
        "CapInh": NONE,
        "CapPrm": AGENT_CAPABILITIES,
        "CapEff": AGENT_CAPABILITIES,
        "CapAmb": NONE,
        "CapBnd": AGENT_CAPABILITIES,
        "NoNewPrivs": "1",
        "Seccomp": "2",
    }


def test_a_sandbox_whose_agent_died_idle_is_replaced_and_the_program_runs_once():
    """An idle sandbox can lose its agent (it died after starting): the request never reached it, so the run goes
    to a fresh sandbox instead of becoming an infra error, and the program runs exactly once."""

    if BwrapBackend.probe() is not None:
        pytest.skip(f"no warm bwrap pool here: {BwrapBackend.probe()}")
    pool = BwrapBackend(BwrapConfig(pool_size=1))
    try:
        pool.warm_up()
        (dead,) = pool.sandboxes()
        dead.process.kill()  # bwrap and, with it (--die-with-parent), the agent; the pool still holds it as idle
        dead.process.wait()
        deadline = time.monotonic() + 30
        while dead.agent.listening():  # the agent follows bwrap a moment later
            assert time.monotonic() < deadline, "the agent outlived its bwrap"
            time.sleep(0.01)
        program = Program(("python3", "-c", "import os; print(len(os.listdir('.')))"))
        result = pool.run(program, Limits())
        assert result.status is Status.OK, result
        assert result.stdout == b"0\n"
        assert dead.name not in pool.sandbox_names()
    finally:
        pool.close()


def test_a_sandbox_started_from_a_thread_that_ended_keeps_serving():
    """bwrap's --die-with-parent follows the thread that forked it: sandboxes started by a thread pool's
    workers must still serve after the pool is gone."""
    from concurrent.futures import ThreadPoolExecutor

    if BwrapBackend.probe() is not None:
        pytest.skip(f"no warm bwrap pool here: {BwrapBackend.probe()}")
    pool = BwrapBackend(BwrapConfig(pool_size=2))
    program = Program(("python3", "-c", "print('ok')"))
    try:
        with ThreadPoolExecutor(max_workers=2) as threads:  # two threads, so both sandboxes get started
            first = list(threads.map(lambda _: pool.run(program, Limits()), range(4)))
        assert [result.status for result in first] == [Status.OK] * 4, first
        # The workers have ended (the executor joined them); a sandbox tied to one of them gets its kill now.
        for sandbox in pool.sandboxes():
            with pytest.raises(subprocess.TimeoutExpired):
                sandbox.process.wait(timeout=0.5)
        later = [pool.run(program, Limits()) for _ in range(4)]
        assert [result.status for result in later] == [Status.OK] * 4, later
    finally:
        pool.close()
