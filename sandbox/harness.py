"""Check a Python solution against HumanEval-style tests (`check(candidate)`) with a verdict the candidate cannot forge.

The tests run in a trusted driver process inside the sandbox, the candidate in a forked child that only
ever hands back plain data (see `harness_driver.py`). The pass verdict is a per-run random sentinel that
the driver prints only after `check` returned; it is decided here, outside the sandbox.

Guarantees, on every backend:
- Hidden tests stay hidden. The tests and their expected values are never a file of the run (the work dir
  holds the driver, the solution and the public prompt only) and never in /tmp: they travel on the driver's
  stdin, which it reads only after forking the candidate, whose copy of fd 0 and every other inherited
  descriptor is closed first; the driver is non-dumpable, so /proc and ptrace cannot reach its memory.
- Only the entry point comes from the candidate. Every other name the tests use (prompt helpers such as an
  encoder or a polynomial evaluator) comes from the trusted prompt, executed in the driver; a solution that
  redefines a helper changes only its own copy.
- Nothing the candidate prints or returns can be the verdict (see `judge`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from verifarm.sandbox.backend import Backend
from verifarm.sandbox.harness_driver import DRIVER_FILE_NAME
from verifarm.sandbox.program import ExecResult, Limits, Program, Status
from verifarm.sandbox.selection import run

DRIVER_SOURCE = (Path(__file__).parent / "harness_driver.py").read_text()
# What every run enforces, in the words a verdict records (envs.code_completion puts it in Verdict.details).
GUARANTEES = "tests readable by candidate: denied; helpers from candidate: denied (entry point only); verdict: sentinel"
# Every check_python run's limits, the Python envs' included. Small CPU on purpose: generated tasks and HumanEval
# need well under a second, so an endless loop costs 2 s, not 10; the wall limit is generous because a loaded machine
# (many workers on few cores) stretches wall time.
HARNESS_LIMITS = Limits(
    cpu_seconds=2,
    wall_seconds=20,
    memory_bytes=256 * 1024 * 1024,
    max_processes=16,
    output_bytes=64 * 1024,
    file_size_bytes=1024 * 1024,
    open_files=64,
)


@dataclass(frozen=True)
class TestOutcome:
    passed: bool
    reason: str
    infra_error: bool
    result: ExecResult

    __test__ = False  # not a pytest test class


def check_python(
    solution: str,
    test_code: str,
    entry_point: str,
    limits: Limits = HARNESS_LIMITS,
    backend: str | Backend = "auto",
    prompt: str = "",
) -> TestOutcome:
    """Run `check(<entry_point>)` from test_code against solution in the sandbox; passed only on the sentinel.

    `prompt` is the task's trusted code (helpers, imports, the entry point's stub): the tests see its names,
    with the entry point replaced by the candidate's function.
    """
    if not entry_point.isidentifier():
        raise ValueError(f"entry_point must be a Python identifier, got {entry_point!r}")
    if "def check" not in test_code:
        raise ValueError("test_code must define check(candidate) in the HumanEval style")
    sentinel = secrets.token_hex(16)
    program = Program(
        command=("python3", "-I", "-S", DRIVER_FILE_NAME, "solution.py", "prompt.py", entry_point),
        files={DRIVER_FILE_NAME: DRIVER_SOURCE, "solution.py": solution, "prompt.py": prompt},
        stdin=(sentinel + "\n" + test_code).encode("utf-8", "surrogatepass"),
    )
    result = run(program, limits, backend=backend)
    return judge(result, sentinel)


def judge(result: ExecResult, sentinel: str) -> TestOutcome:
    """The verdict from outside the sandbox: infra errors are never the candidate's failure."""
    if result.status is Status.INFRA_ERROR:
        return TestOutcome(False, f"sandbox infrastructure error: {result.detail}", True, result)
    lines = result.stdout.decode("utf-8", "replace").splitlines()
    if result.status is Status.OK and f"{sentinel} PASS" in lines:
        return TestOutcome(True, "all tests passed", False, result)
    trusted_error = next((line for line in lines if line.startswith(f"{sentinel} ERROR ")), None)
    if trusted_error is not None:  # the task's own prompt failed in the driver: the checker's fault
        return TestOutcome(False, trusted_error[len(sentinel) + 7 :][:300], True, result)
    if result.status is not Status.OK:
        return TestOutcome(False, f"{result.status.value}: {result.detail}", False, result)
    failure = next((line[5:] for line in lines if line.startswith("FAIL ")), "the tests did not complete")
    return TestOutcome(False, failure[:300], False, result)
