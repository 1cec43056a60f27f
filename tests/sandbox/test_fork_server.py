"""Programs forked from a warm fork server see exactly what a fresh interpreter would: signal dispositions,
argv, sys.path, environment, cwd, umask, rlimits, open fds, __main__, stdio; on every backend, and with the
signal dispositions of a fresh `python3` started on the host."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from verifarm.sandbox import Limits, Program, Status, run

STATE = r"""
import json, os, resource, signal, sys
SHOWN = {signal.SIG_DFL: "default", signal.SIG_IGN: "ignore", None: "foreign"}
def disposition(number):
    handler = signal.getsignal(number)
    return SHOWN.get(handler, getattr(handler, "__name__", "handler"))
numbers = [n for n in sorted(signal.valid_signals())
           if n not in (signal.SIGKILL, signal.SIGSTOP) and n < signal.SIGRTMIN]
main = sys.modules["__main__"]
MAIN_ATTRIBUTES = ("__name__", "__file__", "__package__", "__spec__", "__cached__", "__doc__")
STATUS_LINES = ("NoNewPrivs", "Seccomp", "CapEff", "CapBnd", "SigIgn", "SigBlk")
OURS = ("supervisor", "run_limits", "harness_driver", "zygote", "agent", "workdir")
state = {
    "signals": {signal.Signals(n).name: disposition(n) for n in numbers},
    "blocked": sorted(int(n) for n in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "argv": sys.argv, "orig_argv": sys.orig_argv, "path": sys.path, "flags": str(sys.flags),
    "executable": sys.executable, "environ": dict(os.environ), "cwd": os.getcwd(),
    "umask": os.umask(0o022),
    "rlimits": {name: resource.getrlimit(getattr(resource, name)) for name in dir(resource)
                if name.startswith("RLIMIT_")},
    "fds": sorted(os.listdir("/proc/self/fd")),
    "main": {name: repr(getattr(main, name, "<absent>")) for name in MAIN_ATTRIBUTES},
    "main_loader": type(getattr(main, "__loader__", None)).__name__,
    "main_names": sorted(vars(main)),
    "stdio": [(s.encoding, s.errors, s.line_buffering) for s in (sys.stdin, sys.stdout, sys.stderr)],
    "session_leader": os.getsid(0) == os.getpid() == os.getpgid(0),
    "ids": [os.getuid() == os.geteuid(), os.getgid() == os.getegid(), os.getgroups()],
    "status": [line for line in open("/proc/self/status").read().splitlines() if line.split(":")[0] in STATUS_LINES],
    "our_modules": sorted(name for name in sys.modules if name in OURS),
}
print(json.dumps(state, sort_keys=True, default=str))
"""
BEHAVIOUR = r"""
import os, resource
r, w = os.pipe()
os.close(r)
try:
    os.write(w, b"x")
    print("pipe: wrote")
except BrokenPipeError:
    print("pipe: BrokenPipeError")
try:
    os.kill(os.getpid(), 2)
    import time; time.sleep(1)
    print("sigint: ignored")
except KeyboardInterrupt:
    print("sigint: KeyboardInterrupt")
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
try:
    with open("big", "wb", buffering=0) as handle:
        for _ in range(5):  # the first write stops short at the limit, the next one fails
            handle.write(b"x" * 1000)
    print("fsize: wrote")
except OSError as error:
    print("fsize: OSError", error.errno)
"""
LIMITS = Limits(wall_seconds=20)


def _state(backend: str, command: tuple[str, ...]) -> dict:
    result = run(Program(command, files={"state.py": STATE}), LIMITS, backend)
    assert result.status is Status.OK, (result.status, result.detail, result.stderr[-500:])
    # The process backend's work dir has a fresh random name per run: compare everything else.
    text = result.stdout.decode()
    return json.loads(text.replace(json.loads(text)["cwd"], "<work dir>"))


def test_a_forked_run_is_a_fresh_interpreter(backend: str):
    # `python3 -I -S script` runs from the fork server on the warm backends; through `sh -c exec` it is
    # always a freshly exec'd interpreter in the same sandbox, with the same argv once exec'd.
    forked = _state(backend, ("python3", "-I", "-S", "state.py", "one", "two"))
    fresh = _state(backend, ("sh", "-c", "unset PWD; exec python3 -I -S state.py one two"))  # PWD: the shell's
    assert forked == fresh
    assert forked["argv"] == ["state.py", "one", "two"] and forked["our_modules"] == []


def _foreground_dispositions() -> None:
    for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


def test_signal_dispositions_are_those_of_a_fresh_python3(backend: str, tmp_path):
    script = tmp_path / "state.py"
    script.write_text(STATE)
    # restore_signals (the default) gives the child the dispositions a shell would: what `python3` starts from.
    # The test may itself run in the background (SIGINT and SIGQUIT ignored) or under nohup (SIGHUP ignored); the
    # reference is a python3 started in the foreground, which is what every sandboxed program must get.
    host = json.loads(
        subprocess.run(
            ["python3", "-I", "-S", str(script)],
            capture_output=True,
            check=True,
            cwd=tmp_path,
            preexec_fn=_foreground_dispositions,
        ).stdout
    )
    forked = _state(backend, ("python3", "-I", "-S", "state.py"))
    assert forked["signals"] == host["signals"]
    assert forked["signals"]["SIGPIPE"] == "ignore" and forked["signals"]["SIGXFSZ"] == "ignore"
    assert forked["signals"]["SIGINT"] == "default_int_handler"
    assert forked["blocked"] == [] == host["blocked"]


@pytest.mark.parametrize(
    "command", [("python3", "-I", "-S", "behaviour.py"), ("python3", "behaviour.py")], ids=["fork-server", "fresh"]
)
def test_closed_pipe_sigint_and_file_size_raise_exceptions(backend: str, command):
    result = run(Program(command, files={"behaviour.py": BEHAVIOUR}), LIMITS, backend)
    assert result.status is Status.OK, (result.status, result.detail, result.stderr[-500:])
    assert result.stdout.decode().splitlines() == [
        "pipe: BrokenPipeError",
        "sigint: KeyboardInterrupt",
        "fsize: OSError 27",
    ]
