"""The hardened scorer child: outlives the thread that first used it, refuses to act, is replaced after a kill, and
reports what the lockdown broke (imports, its stderr, its death) instead of passing it off as a reply."""

import importlib
import os
import sys
import threading
import time
from pathlib import Path

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
        status = Path(f"/proc/{_child_pid(checker)}/status").read_text()
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


# Fork per request: every request is scored in a fork of the warm child, which dies after its one reply.
def stateful_handler():
    seen = []

    def handle(request: dict) -> dict:
        seen.append(request.get("note"))  # state an answer leaves behind, as a rewritten scorer would be
        if request.get("forge"):  # a fork that writes extra reply lines into every descriptor it has
            for fd in range(3, 64):
                try:
                    os.write(fd, b'{"seen": ["forged"]}\n' * 3)
                except OSError:
                    pass
        if request.get("exit") is not None:
            os._exit(request["exit"])
        if request.get("spawn"):
            try:
                os.fork()
                return {"spawned": True}
            except OSError as error:
                return {"spawned": False, "error": str(error)}
        if request.get("sleep"):
            time.sleep(request["sleep"])
        return {"seen": list(seen), "pid": os.getpid()}

    return handle


def _forking(factory: str = "stateful_handler") -> ScoringProcess:
    return ScoringProcess(f"tests.envs.test_scoring_process:{factory}", {}, fork_per_request=True)


def test_state_a_request_leaves_dies_with_its_fork() -> None:
    warm = ScoringProcess("tests.envs.test_scoring_process:stateful_handler", {})
    forking = _forking()
    try:
        assert warm.call({"note": "a"}, 30).body["seen"] == ["a"]
        assert warm.call({"note": "b"}, 30).body["seen"] == ["a", "b"]  # without forks, state carries over
        first, second = forking.call({"note": "a"}, 30).body, forking.call({"note": "b"}, 30).body
        assert first["seen"] == ["a"] and second["seen"] == ["b"]
        assert first["pid"] != second["pid"] != forking._process.pid  # a fresh fork each time, not the warm child
    finally:
        warm.close()
        forking.close()


def test_a_fork_forwards_one_reply_and_cannot_spawn() -> None:
    forking = _forking()
    try:
        forged = forking.call({"note": "x", "forge": True}, 30)
        assert forged.status == "ok", forged  # its own reply is whatever its code wrote first: only it is forged
        for note in "yz":  # no line it wrote is left over for a later request
            assert forking.call({"note": note}, 30).body["seen"] == [note]
        spawn = forking.call({"spawn": True}, 30)
        assert spawn.status == "ok" and spawn.body["spawned"] is False, spawn
    finally:
        forking.close()


def test_a_fork_that_dies_or_hangs_leaves_the_warm_child_serving() -> None:
    forking = _forking()
    try:
        assert forking.call({"note": "warm"}, 30).status == "ok"
        warm_pid = forking._process.pid
        died = forking.call({"exit": 0}, 30)
        assert died.status == "failed" and "died without a reply" in died.body["error"], died
        hung = forking.call({"sleep": 60}, 1)
        assert hung.status == "timeout", hung  # the answer's doing: the warm child killed its fork and said so
        assert forking.call({"note": "after"}, 30).body["seen"] == ["after"]
        assert forking._process.pid == warm_pid
    finally:
        forking.close()


def test_a_fork_stopped_by_a_signal_is_a_failure_not_a_timeout() -> None:
    forking = _forking()
    try:
        forking.call({}, 30)
        stopper = threading.Timer(0.5, lambda: _stop_forks_of(forking._process.pid))
        stopper.start()
        reply = forking.call({"sleep": 3}, 2)
        stopper.join()
        assert reply.status == "failed" and "stopped by a signal" in reply.body["error"], reply
    finally:
        forking.close()


def _stop_forks_of(parent_pid: int) -> None:
    children = Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split()
    for pid in children:
        os.kill(int(pid), 19)  # SIGSTOP, as another answer's fork running as the same user could send


def test_the_lockdown_holds_in_the_fork() -> None:
    forking = _forking("lazy_import_handler")
    try:
        assert forking.call({"module": "json"}, 30).body == {"imported": True}
        reply = forking.call({"module": "xml.dom.minidom"}, 30)
        if os.getuid() == 0:
            assert reply.status == "failed" and "imported xml after the lockdown" in reply.body["error"], reply
        else:
            assert reply.status == "ok" and reply.body == {"imported": True}
    finally:
        forking.close()


def ptrace_handler():
    def handle(request: dict) -> dict:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        attached = libc.ptrace(16, os.getppid(), None, None)  # PTRACE_ATTACH to the warm child
        return {"attached": attached == 0, "errno": ctypes.get_errno()}

    return handle


def test_a_fork_cannot_ptrace_the_warm_child() -> None:
    # the fork shares the warm child's user, so only the child's non-dumpable flag keeps it from reading or
    # rewriting the child's memory (which every later fork copies)
    forking = _forking("ptrace_handler")
    try:
        reply = forking.call({}, 30)
        assert reply.status == "ok" and reply.body == {"attached": False, "errno": 1}, reply  # EPERM
        assert forking.call({}, 30).status == "ok"
    finally:
        forking.close()
