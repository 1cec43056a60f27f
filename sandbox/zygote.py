"""Fork server for Python runs inside a warm sandbox (docker or bwrap): a warm interpreter forks each run.

Starting `python3 -I -S script` costs more CPU than a HumanEval test itself; forking an interpreter that is
already up costs a millisecond. The template (root, in the sandbox) forks an idle child *before* the
next job exists, so no child ever holds another run's data; the child receives its job and pipe ends
over a socket, applies the run's rlimits, new session and run uid, and runs the script as `__main__`
exactly as `python3 -I -S script args` would: same signal dispositions, argv, sys.path, environment (the
template starts in the runs' environment, so stdio encodings agree), cwd, umask, rlimits, open fds and
`__main__`. What stays visible: modules of the standard library the template had already imported sit in
sys.modules, and every run of one template shares its string-hash seed. The template only reports pids and
wait statuses (a stop is not an end: it waits on until the run exits or is killed). It runs any Program
of that shape, whatever the script is. Standard library only; used by agent.py.
"""

# The template imports only what it needs, all of it light: every module here is copied into each forked
# run (fork and exit cost grows with the heap: about 0.3 ms instead of 0.9 ms with json, socket, dataclasses
# and subprocess loaded) and shows in its sys.modules. The agent's side (class Zygote) imports its own.
import _socket
import atexit
import builtins
import importlib.machinery
import marshal
import os
import signal
import sys

try:
    from verifarm.sandbox.run_limits import _LIBC, apply_run_limits, wait_for_exit
except ImportError:  # inside a sandbox only this folder exists, mounted at /opt/verifarm
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_limits import _LIBC, apply_run_limits, wait_for_exit  # type: ignore[import-not-found, no-redef]

PYTHON_PREFIX = ["python3", "-I", "-S"]
TYPE_CHECKING = False  # not `typing`'s: importing it costs start-up time; type checkers read this name as True
if TYPE_CHECKING:
    from types import CodeType
else:
    CodeType = type(compile("", "", "exec"))
PR_SET_DUMPABLE = 4
JOB_ARGV_BYTES = 16 * 1024  # the whole job must fit one socket message (see _run_job)


def runs_in_zygote(argv: list[str]) -> bool:
    """Commands the fork server reproduces exactly: `python3 -I -S <script.py> [args...]`."""
    return (
        len(argv) >= 4
        and argv[:3] == PYTHON_PREFIX
        and argv[3].endswith(".py")
        and not argv[3].startswith("-")
        and "/" not in argv[3]
        and sum(map(len, argv)) < JOB_ARGV_BYTES
    )


def precompile_harness(run_dir: str) -> dict[tuple[str, bytes], CodeType]:
    """check_python's driver, compiled once here instead of in every run (it is most of a run's CPU).

    Only an optimisation: a run whose script is not this exact source at this path is compiled as usual,
    and without a driver (or without its file name) the server runs every Program all the same."""
    folder = os.path.dirname(os.path.abspath(__file__))
    try:
        try:
            # deferred: the fork server holds only what its runs need; a missing driver only costs the optimisation
            from verifarm.sandbox.harness_driver import DRIVER_FILE_NAME
        except ImportError:
            from harness_driver import DRIVER_FILE_NAME  # type: ignore[import-not-found, no-redef]
        with open(os.path.join(folder, "harness_driver.py"), "rb") as handle:
            source = handle.read()
    except (ImportError, OSError):
        return {}
    path = os.path.join(run_dir, DRIVER_FILE_NAME)
    return {(path, source): compile(source, path, "exec")}


def _receive_job(job_socket) -> tuple[bytes, list[int]]:
    """One job message and the file descriptors sent with it (SCM_RIGHTS), with the low-level socket."""
    message, ancillary, _, _ = job_socket.recvmsg(1 << 16, _socket.CMSG_SPACE(3 * 4))
    fds = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [
                int.from_bytes(data[at : at + 4], sys.byteorder, signed=True)
                for at in range(0, len(data) - len(data) % 4, 4)
            ]
    return message, fds


def _run_job(job_socket, control, precompiled: dict[tuple[str, bytes], CodeType]) -> None:
    """In the pre-forked child: wait for one job, become the run, never return."""
    code = 1
    try:
        control.close()
        message, fds = _receive_job(job_socket)
        job_socket.close()
        if not message or len(fds) != 3:
            os._exit(1)
        job = marshal.loads(message)  # from the agent (root), the only other end of this socket
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.setsid()
        # Signal dispositions stay as the template's interpreter set them, which is what a fresh `python3`
        # sets: SIGPIPE and SIGXFSZ ignored (a write fails with an exception), SIGINT -> KeyboardInterrupt.
        apply_run_limits(**job["limits"])  # rlimits, then the run uid
        # Changing uid made us non-dumpable (root-owned /proc/self); a program exec'd as this uid is not.
        _LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        script = job["argv"][3]
        sys.argv = job["argv"][3:]
        sys.orig_argv = list(job["argv"])
        _forget_template()
        main = type(sys)("__main__")
        main.__file__ = os.path.abspath(script)  # as Python 3.9+ sets it for the __main__ script
        main.__annotations__ = {}
        main.__loader__ = importlib.machinery.SourceFileLoader("__main__", main.__file__)
        main.__dict__.update(__cached__=None, __builtins__=builtins)
        sys.modules["__main__"] = main
        with open(script, "rb") as handle:
            source = handle.read()
        atexit._clear()  # exit handlers of the template are not the program's
        code = 0
        code_object = precompiled.get((main.__file__, source)) or compile(source, main.__file__, "exec")
        exec(code_object, main.__dict__)
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code & 0xFF
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        code = _finalize(code)
        os._exit(code)


def _forget_template() -> None:
    """Drop what the template added to the interpreter: its folder on sys.path and the modules it loaded
    from there (a fresh `python3 -I -S` has neither: isolated mode never adds a script's folder)."""
    folder = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if entry != folder]
    for name, module in list(sys.modules.items()):
        if os.path.dirname(os.path.abspath(getattr(module, "__file__", None) or "/")) == folder:
            del sys.modules[name]


def _finalize(code: int) -> int:
    """What the interpreter does at exit: join non-daemon threads, run atexit handlers, flush."""
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        atexit._run_exitfuncs()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        code = code or 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            code = code or 120  # as Python does when flushing stdout fails at exit
    return code


def serve(job_fd: int, control_fd: int, run_dir: str) -> None:
    """The template: keep one idle child ready; report its pid, then its wait status and usage."""
    # What a fresh python3 started from a foreground shell has, however the agent was started (a background
    # worker ignores SIGINT and SIGQUIT, a nohup one SIGHUP, and the template inherits that): runs fork from here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    precompiled = precompile_harness(run_dir)
    job_socket = _socket.socket(fileno=job_fd)
    control = _socket.socket(fileno=control_fd)
    for stream_fd in (0, 1):
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, stream_fd)
        os.close(null)
    while True:
        child = os.fork()
        if child == 0:
            _run_job(job_socket, control, precompiled)
        try:
            control.send(str(child).encode())
        except OSError:
            os._exit(0)
        # A run that stops itself (ptrace TRACEME, then SIGSTOP) is still running: it ends as a timeout.
        status, cpu_seconds, peak_memory = wait_for_exit(child)
        try:
            control.send(marshal.dumps((status, cpu_seconds, peak_memory)))
        except OSError:
            os._exit(0)


class Zygote:
    """The agent's handle on the template process."""

    def __init__(self, run_dir: str, env: dict[str, str]) -> None:
        import socket
        import subprocess

        try:
            # deferred: the agent's side only; the fork server, which runs this file too, never loads the supervisor
            from verifarm.sandbox.supervisor import Launched
        except ImportError:  # inside a sandbox
            from supervisor import Launched  # type: ignore[import-not-found, no-redef]
        self._launched = Launched
        self._job, job_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        script = os.path.abspath(__file__)
        # The runs' own environment from the start: the interpreter reads the locale (stdio encoding, UTF-8
        # mode) once at start-up, and a forked run must see what a fresh interpreter in that environment would.
        self.process = subprocess.Popen(
            ["python3", "-I", "-S", script, str(job_child.fileno()), str(control_child.fileno()), run_dir],
            pass_fds=(job_child.fileno(), control_child.fileno()),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        job_child.close()
        control_child.close()

    def launch(self, request):
        """Hand a SpawnRequest to the idle child; the supervisor's Launched for it."""
        import socket

        message = self._control.recv(64)
        if not message:
            raise OSError("the fork server is gone")
        pid = int(message)
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        # Only the limits travel with the job; stdin goes through the pipe, never through the child's memory.
        limits = {
            name: getattr(request, name)
            for name in ("cpu_seconds", "memory_bytes", "max_processes", "file_size_bytes", "open_files", "uid", "gid")
        }
        job = {"limits": limits, "argv": list(request.argv), "env": dict(request.env), "cwd": request.cwd}
        pidfd = os.pidfd_open(pid)  # before the job exists, so the pid cannot be reaped and reused under us
        try:
            socket.send_fds(self._job, [marshal.dumps(job)], [stdin_read, stdout_write, stderr_write])
        finally:
            for fd in (stdin_read, stdout_write, stderr_write):
                os.close(fd)

        def reap() -> tuple[int, float, int]:
            reply = self._control.recv(256)
            if not reply:
                raise OSError("the fork server died during a run")
            status, cpu_seconds, peak_memory = marshal.loads(reply)
            return status, cpu_seconds, peak_memory

        return self._launched(pid, stdin_write, stdout_read, stderr_read, reap, pidfd)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self._job.close()
        self._control.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
