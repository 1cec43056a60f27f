"""What a run leaves in the process table: a process that stops itself is still running (the run ends as a
timeout) and nothing of it survives; zombies and stopped processes are reaped by the wipe, so a warm
sandbox stays healthy over many runs; a run is held to its sandbox's CPU quota."""

from __future__ import annotations

import time

import pytest

from verifarm.sandbox import Limits, Program, Status, run
from verifarm.sandbox.bwrap_backend import BwrapBackend, BwrapConfig
from verifarm.sandbox.bwrap_single import SingleRunBwrapBackend
from verifarm.sandbox.docker_backend import DockerBackend, DockerConfig
from verifarm.sandbox.selection import probe_backend
from verifarm.sandbox.workdir import uid_processes

SHORT = Limits(cpu_seconds=2, wall_seconds=2.5, max_processes=16)

STOPPERS = {
    # ptrace(PTRACE_TRACEME) makes the parent (the fork server, the supervisor) the tracer, which then sees
    # the stop in its wait: the run must keep "running" until its wall clock runs out.
    "traceme_then_stop": "import ctypes, os, signal\nctypes.CDLL(None).ptrace(0, 0, 0, 0)\n"
    "os.kill(os.getpid(), signal.SIGSTOP)\nprint('resumed')\n",
    "stop_self": "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\nprint('resumed')\n",
    "fresh_interpreter_traceme_then_stop": None,  # the same as the first, through `sh -c exec` (no fork server)
}
# Leaves three zombies (children never waited for), a child that stops itself under ptrace and one that
# stops plainly, then exits at once.
ZOMBIE_MAKER = (
    "import ctypes, os, signal\nfor _ in range(3):\n    if os.fork() == 0:\n        os._exit(0)\n"
    "if os.fork() == 0:\n    ctypes.CDLL(None).ptrace(0, 0, 0, 0)\n"
    "    os.kill(os.getpid(), signal.SIGSTOP)\n    os._exit(0)\n"
    "if os.fork() == 0:\n    os.kill(os.getpid(), signal.SIGSTOP)\n    os._exit(0)\n"
    "print('left')\n"
)


def _pool(name: str, **config):
    reason = probe_backend(name)
    if reason:
        pytest.skip(f"{name} backend unavailable: {reason}")
    if name == "docker":
        return DockerBackend(DockerConfig(pool_size=1, **config))

    reason = BwrapBackend.probe()
    if reason:
        pytest.skip(reason)
    return BwrapBackend(BwrapConfig(pool_size=1, **config))


POOLS = [pytest.param("docker", marks=pytest.mark.docker), "bwrap"]


@pytest.mark.parametrize("source", STOPPERS.values(), ids=STOPPERS.keys())
def test_a_stopped_program_runs_into_its_wall_clock_and_leaves_nothing(
    backend: str, source: str | None, token: str, nothing_left
):
    command = ("python3", "-I", "-S", f"s_{token}.py") if source else ("sh", "-c", f"exec python3 s_{token}.py")
    source = source or STOPPERS["traceme_then_stop"]
    result = run(Program(command, files={f"s_{token}.py": source}), SHORT, backend)
    assert result.status is Status.TIMEOUT, (result.status, result.detail, result.stderr[-300:])
    assert result.wall_seconds >= SHORT.wall_seconds - 0.1
    nothing_left(token)


def _run_uid_processes(pool) -> list[int]:
    (sandbox,) = pool.sandboxes()
    return uid_processes(sandbox.identity.uid, include_zombies=True)


@pytest.mark.parametrize("name", POOLS)
def test_zombies_and_stopped_children_are_reaped_between_runs(name: str):
    pool = _pool(name)
    try:
        for command in (("python3", "-I", "-S", "z.py"), ("python3", "z.py")):  # fork server and fresh
            result = pool.run(Program(command, files={"z.py": ZOMBIE_MAKER}), SHORT)
            assert result.status is Status.OK and result.stdout == b"left\n", result
            assert "unclean" not in result.detail, result.detail
        names = pool.sandbox_names()
        assert len(names) == 1 and _run_uid_processes(pool) == []
        stopped = pool.run(
            Program(("python3", "-I", "-S", "s.py"), files={"s.py": STOPPERS["traceme_then_stop"]}), SHORT
        )
        assert stopped.status is Status.TIMEOUT
        assert pool.sandbox_names() == names and _run_uid_processes(pool) == []
    finally:
        pool.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", POOLS)
def test_a_thousand_zombie_making_runs_leave_the_pool_healthy(name: str):
    pool = _pool(name)
    try:
        program = Program(("python3", "-I", "-S", "z.py"), files={"z.py": ZOMBIE_MAKER})
        first = pool.run(program, SHORT)
        names = pool.sandbox_names()
        statuses = [first.status] + [pool.run(program, SHORT).status for _ in range(999)]
        assert statuses == [Status.OK] * 1000
        assert pool.sandbox_names() == names, "a sandbox was discarded: some wipe was unclean"
        assert _run_uid_processes(pool) == []
        after = pool.run(Program(("python3", "-c", "print('healthy')")), SHORT)
        assert after.status is Status.OK and after.stdout == b"healthy\n"
    finally:
        pool.close()


SPIN = (
    "import threading, time\nend = time.monotonic() + 3\ndef spin():\n    while time.monotonic() < end: pass\n"
    "threads = [threading.Thread(target=spin) for _ in range(4)]\n[t.start() for t in threads]\n"
    "[t.join() for t in threads]\n"
)


@pytest.mark.parametrize("name", POOLS)
def test_a_multithreaded_spin_is_held_to_the_cpu_quota(name: str):
    """Half a core: even on a loaded 2-core machine an unthrottled 4-thread spin gets more than that."""
    pool = _pool(name, cpus=0.5)
    try:
        pool.warm_up()
        (sandbox,) = pool.sandboxes()
        assert sandbox.cgroup is not None and sandbox.cgroup.cpu_quota() == pytest.approx(0.5)
        used_before, started = sandbox.cgroup.cpu_seconds(), time.monotonic()
        result = pool.run(
            Program(("python3", "-I", "-S", "spin.py"), files={"spin.py": SPIN}),
            Limits(cpu_seconds=20, wall_seconds=20),
        )
        wall = time.monotonic() - started
        used = sandbox.cgroup.cpu_seconds() - used_before
        assert result.status is Status.OK, result
        assert used <= 0.5 * wall * 1.1 + 0.05, f"{used:.2f} CPU seconds in {wall:.2f}s: more than half a core"
        assert used >= 0.1, "the spin should have run (even on a saturated machine)"
    finally:
        pool.close()


def test_bwrap_without_root_also_treats_a_stopped_program_as_running(token: str, nothing_left):
    """The one-sandbox-per-run bwrap (what non-root users get) has bwrap's own init as a parent, which takes
    a stop for an end; a parent of ours in between keeps waiting."""

    reason = SingleRunBwrapBackend.probe()
    if reason:
        pytest.skip(reason)
    program = Program(("python3", f"s_{token}.py"), files={f"s_{token}.py": STOPPERS["traceme_then_stop"]})
    result = SingleRunBwrapBackend().run(program, SHORT)
    assert result.status is Status.TIMEOUT, (result.status, result.detail, result.stderr[-300:])
    nothing_left(token)
