"""The hardened scorer child: outlives the thread that first used it, refuses to act, and is replaced after a kill."""

import os
import threading

from verifarm.envs.math_equivalence import MathEquivalenceChecker


def _child_pid(checker: MathEquivalenceChecker) -> int:
    process = checker._process._process
    assert process is not None and process.poll() is None
    return process.pid


def test_child_outlives_the_thread_that_started_it() -> None:
    checker = MathEquivalenceChecker(timeout_seconds=2)
    try:
        results = []
        thread = threading.Thread(target=lambda: results.append(checker.check("\\frac{1}{2}", "0.5")))
        thread.start()
        thread.join()
        pid = _child_pid(checker)
        assert results[0].equivalent
        assert checker.check("3", "x = 3").equivalent
        assert _child_pid(checker) == pid  # the same child served both: no restart after the thread ended
    finally:
        checker.close()


def test_child_is_deprivileged_when_started_as_root() -> None:
    checker = MathEquivalenceChecker(timeout_seconds=2)
    try:
        checker.check("1", "1.0")
        status = open(f"/proc/{_child_pid(checker)}/status").read()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        if os.getuid() == 0:
            assert uid_line.split()[1:] == ["65534"] * 4, uid_line
        else:
            assert uid_line.split()[1] == str(os.getuid())
    finally:
        checker.close()
    assert checker._process._process is None
