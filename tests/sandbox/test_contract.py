"""The sandbox contract on every backend: statuses, limits, outputs, infra errors, the backend named."""

from __future__ import annotations

import pytest

from verifarm.sandbox import ExecResult, Limits, Program, Status, default_backend_name, get_backend, run
from verifarm.sandbox.outcome import classify
from verifarm.sandbox.supervisor import RawOutcome

FAST = Limits(
    cpu_seconds=2,
    wall_seconds=4,
    memory_bytes=256 * 1024 * 1024,
    max_processes=16,
    output_bytes=64 * 1024,
    file_size_bytes=1024 * 1024,
    open_files=64,
)


def py(code: str, **kwargs) -> Program:
    return Program(command=("python3", "main.py"), files={"main.py": code}, **kwargs)


def test_ok_with_stdin_and_files(backend):
    code = "import sys; print(open('data.txt').read() + sys.stdin.read())"
    result = run(
        Program(("python3", "main.py"), files={"main.py": code, "data.txt": "hello "}, stdin=b"world"), FAST, backend
    )
    assert result.status is Status.OK, result
    assert result.stdout == b"hello world\n"
    assert result.backend == backend
    assert result.wall_seconds > 0 and result.peak_memory_bytes > 0


def test_nonzero_exit_and_signal(backend):
    assert run(py("raise SystemExit(3)"), FAST, backend).exit_code == 3
    assert run(py("raise SystemExit(3)"), FAST, backend).status is Status.NONZERO_EXIT
    killed = run(py("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"), FAST, backend)
    assert killed.status is Status.KILLED and killed.signal == 11


def test_wall_and_cpu_limits(backend):
    sleeper = run(py("import time; time.sleep(30)"), Limits(wall_seconds=1), backend)
    assert sleeper.status is Status.TIMEOUT and sleeper.wall_seconds < 5
    spinner = run(py("while True: pass"), Limits(cpu_seconds=1, wall_seconds=10), backend)
    assert spinner.status is Status.TIMEOUT and "CPU limit" in spinner.detail, spinner.detail


def test_memory_limit(backend):
    result = run(py("blocks = []\nwhile True: blocks.append(bytearray(32 * 1024 * 1024))"), FAST, backend)
    assert result.status is Status.MEMORY_LIMIT, result


def test_output_is_capped_and_flagged(backend):
    result = run(py("import sys\nwhile True: sys.stdout.write('x' * 4096)"), FAST, backend)
    assert result.status is Status.OUTPUT_LIMIT and result.truncated
    assert len(result.stdout) + len(result.stderr) <= FAST.output_bytes


def test_file_size_open_files_and_process_limits(backend):
    big = run(py("open('big', 'wb').write(b'x' * (8 * 1024 * 1024))"), FAST, backend)
    assert big.status is Status.OUTPUT_LIMIT, big
    files = run(py("handles = [open(f'f{i}', 'w') for i in range(500)]"), FAST, backend)
    assert files.status is Status.NONZERO_EXIT and b"Too many open files" in files.stderr
    procs = run(py("import subprocess\nps = [subprocess.Popen(['sleep', '5']) for _ in range(40)]"), FAST, backend)
    assert procs.status is Status.NONZERO_EXIT and b"Resource temporarily unavailable" in procs.stderr


def test_outputs_come_back_and_never_follow_symlinks(backend):
    program = Program(
        ("python3", "main.py"),
        files={
            "main.py": ("import os\nopen('made.bin', 'wb').write(b'\\x00\\x01')\nos.symlink('/etc/hostname', 'leak')")
        },
        outputs=("made.bin", "leak", "missing"),
    )
    result = run(program, FAST, backend)
    assert result.status is Status.OK, result
    assert result.files == {"made.bin": b"\x00\x01"}


def test_outputs_that_are_fifos_or_folders_are_skipped_without_hanging(backend):
    code = (
        "import os\nos.mkfifo('pipe')\nos.mkdir('folder')\nopen('big', 'wb').write(b'x' * 2048)\n"
        "open('fine', 'wb').write(b'ok')\n"
    )
    program = Program(("python3", "main.py"), files={"main.py": code}, outputs=("pipe", "folder", "big", "fine"))
    result = run(program, Limits(file_size_bytes=1024, wall_seconds=10), backend)
    assert result.files["fine"] == b"ok" and "pipe" not in result.files and "folder" not in result.files
    assert len(result.files.get("big", b"")) <= 1024  # the file size limit already cut it there


def test_missing_command_is_an_infra_error(backend):
    result = run(Program(("no-such-interpreter-here", "x")), FAST, backend)
    assert result.status is Status.INFRA_ERROR, result


def test_process_backend_says_it_is_unsafe():
    result = run(py("print(1)"), FAST, "process")
    assert "UNSAFE" in result.detail


def test_default_backend_is_named_and_env_override(monkeypatch):
    assert default_backend_name() in ("docker", "bwrap", "process")
    monkeypatch.setenv("VERIFARM_SANDBOX_BACKEND", "process")
    assert default_backend_name() == "process"
    assert get_backend("auto").name == "process"
    monkeypatch.setenv("VERIFARM_SANDBOX_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        default_backend_name()


def test_invalid_inputs_raise_value_error():
    with pytest.raises(ValueError):
        Program(command=())
    with pytest.raises(ValueError):
        Program(command=("x",), files={"../escape": "x"})
    with pytest.raises(ValueError):
        Program(command=("x",), outputs=("dir/file",))
    with pytest.raises(ValueError):
        Limits(wall_seconds=0)
    with pytest.raises(ValueError):
        run(py("print(1)"), FAST, "no-such-backend")


def _raw(**overrides) -> RawOutcome:
    base = dict(
        exit_code=0,
        signal=None,
        stdout=b"",
        stderr=b"",
        truncated=False,
        timed_out=False,
        cpu_seconds=0.1,
        wall_seconds=0.1,
        peak_memory_bytes=10_000_000,
    )
    base.update(overrides)
    return RawOutcome(**base)


@pytest.mark.parametrize(
    "overrides, status",
    [
        ({}, Status.OK),
        ({"exit_code": 2}, Status.NONZERO_EXIT),
        ({"exit_code": None, "signal": 9}, Status.KILLED),
        ({"exit_code": None, "signal": 24}, Status.TIMEOUT),
        ({"exit_code": None, "signal": 9, "cpu_seconds": 10.0}, Status.TIMEOUT),
        ({"timed_out": True, "exit_code": None, "signal": 9}, Status.TIMEOUT),
        ({"truncated": True, "exit_code": None, "signal": 9}, Status.OUTPUT_LIMIT),
        ({"exit_code": 1, "stderr": b"MemoryError\n"}, Status.MEMORY_LIMIT),
        ({"exit_code": 0, "stderr": b"MemoryError\n"}, Status.OK),
        ({"exit_code": None, "signal": 9, "peak_memory_bytes": 600 * 1024 * 1024}, Status.MEMORY_LIMIT),
        ({"spawn_error": "no such file"}, Status.INFRA_ERROR),
    ],
)
def test_classify(overrides, status):
    assert classify(_raw(**overrides), Limits(), "test").status is status


def test_exec_result_ok_property():
    result = classify(_raw(), Limits(), "test")
    assert isinstance(result, ExecResult) and result.ok


FAST_PATH_PROGRAMS = [
    # (source, stdin, expected exit code, expected stdout, text expected in stderr)
    (
        "import os, sys\nprint(sys.argv, __name__, os.path.isabs(__file__), os.path.basename(__file__))\n",
        b"",
        0,
        b"['main.py', 'x', 'y'] __main__ True main.py\n",
        b"",
    ),
    ("import sys\nsys.stdout.write(sys.stdin.read().upper())\n", b"echo me", 0, b"ECHO ME", b""),
    ("import sys\nsys.exit(3)\n", b"", 3, b"", b""),
    ("import sys\nsys.exit('fatal message')\n", b"", 1, b"", b"fatal message"),
    ("raise ValueError('boom')\n", b"", 1, b"", b"ValueError: boom"),
    (
        "import atexit, threading, time\natexit.register(lambda: print('bye'))\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\nprint('main')\n",
        b"",
        0,
        b"main\nthread\nbye\n",
        b"",
    ),
    (
        "import os\nprint(os.environ.get('HOME') == os.getcwd() or os.environ.get('HOME'), 'PATH' in os.environ)\n",
        b"",
        0,
        None,
        b"",
    ),
]


@pytest.mark.parametrize("index", range(len(FAST_PATH_PROGRAMS)))
def test_python_isolated_mode_behaves_the_same_on_every_backend(backend, index):
    """`python3 -I -S main.py` takes the docker fork server's fast path; it must behave like an interpreter."""
    source, stdin, exit_code, stdout, stderr_part = FAST_PATH_PROGRAMS[index]
    result = run(
        Program(("python3", "-I", "-S", "main.py", "x", "y"), files={"main.py": source}, stdin=stdin), FAST, backend
    )
    assert result.exit_code == exit_code, result
    if stdout is not None:
        assert result.stdout == stdout
    assert stderr_part in result.stderr
