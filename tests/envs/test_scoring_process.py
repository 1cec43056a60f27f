"""The hardened scorer child: outlives the thread that first used it, refuses to act, is replaced after a kill, and
reports what the lockdown broke (imports, its stderr, its death) instead of passing it off as a reply."""

import importlib
import os
import sys
import threading
import time

from verifarm.envs.math_equivalence import MathEquivalenceChecker
from verifarm.envs.scoring_process import ScoringProcess


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


# Handler factories the child imports (``tests.envs.test_scoring_process:...``) before it locks itself down.
def lazy_import_handler():
    def handle(request: dict) -> dict:
        try:  # as math-verify does: swallow the ImportError and answer anyway
            importlib.import_module(request["module"])
            return {"imported": True}
        except ImportError:
            return {"imported": False}
    return handle


def noisy_handler():
    def handle(request: dict) -> dict:
        sys.stderr.write(request.get("say", "a library in trouble") + "\n")
        if request.get("exit") is not None:
            sys.stderr.flush()
            os._exit(request["exit"])
        return {"ok": True}
    return handle


def broken_factory():
    raise RuntimeError("the scorer could not load its data")


def test_an_import_after_the_lockdown_is_a_failure_not_a_reply() -> None:
    scorer = ScoringProcess("tests.envs.test_scoring_process:lazy_import_handler", {})
    try:
        assert scorer.call({"module": "json"}, 30).body == {"imported": True}  # already loaded: fine
        reply = scorer.call({"module": "xml.dom.minidom"}, 30)
        if os.getuid() == 0:  # chrooted: the module file cannot be read, whatever the handler says
            assert reply.status == "failed" and "imported xml after the lockdown" in reply.body["error"], reply
        else:  # no chroot without root: the import works and nothing is hidden
            assert reply.status == "ok" and reply.body == {"imported": True}
    finally:
        scorer.close()


def test_the_childs_stderr_comes_back_with_its_reply_and_its_death() -> None:
    scorer = ScoringProcess("tests.envs.test_scoring_process:noisy_handler", {})
    try:
        reply = scorer.call({"say": "warning: precision lost"}, 30)
        assert reply.status == "ok" and "precision lost" in reply.stderr
        assert scorer.call({"say": ""}, 30).stderr.strip() == ""  # per request, not cumulative
        reply = scorer.call({"say": "fatal: out of cheese", "exit": 3}, 30)
        assert reply.status == "failed" and "exit status 3" in reply.body["error"]
        assert "out of cheese" in reply.stderr
    finally:
        scorer.close()


def test_a_scorer_that_cannot_start_reports_its_traceback() -> None:
    scorer = ScoringProcess("tests.envs.test_scoring_process:broken_factory", {})
    try:
        reply = scorer.call({}, 30)
        assert reply.status == "failed" and "could not load its data" in reply.body["error"]
    finally:
        scorer.close()


def test_checker_stderr_turns_a_verdict_into_an_infra_error() -> None:
    checker = MathEquivalenceChecker(timeout_seconds=2)
    checker._process.close()
    checker._process = ScoringProcess("tests.envs.test_scoring_process:noisy_handler", {})  # a scorer in trouble
    try:
        result = checker.check("1", "1")
        assert result.infra_error and not result.equivalent and "library in trouble" in result.detail, result
    finally:
        checker.close()


def stderr_closing_handler():
    def handle(request: dict) -> dict:
        os.close(1), os.close(2)  # fd 1 is a copy of stderr in the child: both must go for the pipe to close
        time.sleep(request["sleep"])
        return {"ok": True}
    return handle


def test_a_child_that_closes_its_stderr_is_still_served() -> None:
    # a scorer that closes its stderr and then takes its time must not make the parent spin on select
    scorer = ScoringProcess("tests.envs.test_scoring_process:stderr_closing_handler", {})
    try:
        cpu_before = time.process_time()
        reply = scorer.call({"sleep": 2.0}, 30)
        assert reply.status == "ok" and reply.body == {"ok": True}
        assert time.process_time() - cpu_before < 0.1  # waited on select (a few ms of CPU), did not spin
    finally:
        scorer.close()


def raising_handler():
    def handle(request: dict) -> dict:
        raise KeyError("a bug in the scorer")
    return handle


def test_an_exception_in_the_checker_is_an_infra_error_with_its_text() -> None:
    checker = MathEquivalenceChecker(timeout_seconds=2)
    checker._process.close()
    checker._process = ScoringProcess("tests.envs.test_scoring_process:raising_handler", {})
    try:
        result = checker.check("1", "1")
        assert result.infra_error and not result.equivalent and "a bug in the scorer" in result.detail, result
    finally:
        checker.close()
