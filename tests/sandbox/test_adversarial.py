"""Hostile programs on every backend: each ends with the right status, the same on every backend, leaves
nothing running, harms nothing.

Every program's file name carries a per-test token, so any process it starts can be found on the host
(containers included) afterwards. Where the process backend cannot isolate by design (shared filesystem
and network), those checks are skipped for it with the reason.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from verifarm.sandbox import Limits, Program, Status, run
from verifarm.sandbox.cgroup import Cgroup
from verifarm.sandbox.compile_run import LanguageRun, compile_and_run
from verifarm.sandbox.selection import BACKEND_NAMES, probe_backend

HOSTILE = Limits(
    cpu_seconds=1.5,
    wall_seconds=20,
    memory_bytes=256 * 1024 * 1024,
    max_processes=16,
    output_bytes=32 * 1024,
    file_size_bytes=1024 * 1024,
    open_files=64,
)
# Programs expected to run out of time get a short wall clock (keeps the suite fast); the others a long
# one, so a loaded CI machine compiling C cannot turn their expected status into a timeout.
HOSTILE_SHORT = replace(HOSTILE, wall_seconds=2.5)
ANY_FAILURE = {Status.NONZERO_EXIT, Status.TIMEOUT, Status.MEMORY_LIMIT, Status.OUTPUT_LIMIT, Status.KILLED}


@dataclass(frozen=True)
class Hostile:
    name: str
    language: str  # "python" or "c"
    source: str
    expect: frozenset  # acceptable statuses
    needs_isolation: bool = False  # the process backend cannot pass it by design
    needs_cgroup: bool = False  # host backends need a writable cgroupfs for a whole-tree memory cap


def hostile(name, language, source, expect, needs_isolation=False, needs_cgroup=False):
    expect = frozenset(expect if isinstance(expect, (set, frozenset)) else {expect})
    return Hostile(name, language, source, expect, needs_isolation, needs_cgroup)


def _host_cgroups_work() -> bool:
    group = Cgroup.create(64 * 1024 * 1024, 8, None)
    if group is None:
        return False
    group.remove()
    return True


HOST_CGROUPS = _host_cgroups_work()


CASES = [
    hostile(
        "py_fork_bomb",
        "python",
        "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n",
        {Status.TIMEOUT, Status.KILLED, Status.NONZERO_EXIT, Status.MEMORY_LIMIT},
    ),
    hostile("c_fork_bomb", "c", "#include <unistd.h>\nint main(){for(;;) fork();}\n", {Status.TIMEOUT, Status.KILLED}),
    hostile(
        "py_thread_bomb",
        "python",
        "import threading, time\nwhile True: threading.Thread(target=time.sleep, args=(60,)).start()\n",
        {Status.NONZERO_EXIT, Status.MEMORY_LIMIT, Status.TIMEOUT},
    ),
    hostile("py_memory_balloon", "python", "x = []\nwhile True: x.append(bytearray(16 << 20))\n", Status.MEMORY_LIMIT),
    hostile(
        "c_memory_balloon",
        "c",
        "#include <stdlib.h>\n#include <string.h>\n#include <stdio.h>\n"
        'int main(){for(;;){char*p=malloc(1<<24); if(!p){fprintf(stderr,"out of memory\\n"); return 1;}'
        " memset(p,1,1<<24);}}\n",
        Status.MEMORY_LIMIT,
    ),
    hostile(
        "py_forked_memory_balloon",
        "python",
        "import os, time\nfor i in range(6):\n    if os.fork() == 0:\n        x = b'x' * (100 << 20)\n"
        "        time.sleep(2)\n        os._exit(0)\nstatuses = [os.wait()[1] for _ in range(6)]\n"
        "raise SystemExit(9 if any(statuses) else 0)\n",
        Status.MEMORY_LIMIT,
        needs_cgroup=True,
    ),
    hostile("py_cpu_spin", "python", "while True: pass\n", Status.TIMEOUT),
    hostile("c_cpu_spin", "c", "int main(){volatile unsigned long i=0; for(;;) i++;}\n", Status.TIMEOUT),
    hostile(
        "py_ignores_sigxcpu",
        "python",
        "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass\n",
        Status.TIMEOUT,
    ),
    hostile("py_sleep_past_wall", "python", "import time\ntime.sleep(60)\n", Status.TIMEOUT),
    hostile("py_runaway_stdout", "python", "while True: print('spam' * 1000)\n", Status.OUTPUT_LIMIT),
    hostile(
        "c_runaway_stdout",
        "c",
        '#include <stdio.h>\nint main(){for(;;) puts("spam spam spam");}\n',
        Status.OUTPUT_LIMIT,
    ),
    hostile(
        "py_runaway_stderr", "python", "import sys\nwhile True: sys.stderr.write('e' * 1000)\n", Status.OUTPUT_LIMIT
    ),
    hostile(
        "py_giant_file",
        "python",
        "with open('giant', 'wb') as f:\n    while True: f.write(b'x' * 65536)\n",
        Status.OUTPUT_LIMIT,
    ),
    hostile(
        "c_giant_file",
        "c",
        '#include <stdio.h>\nint main(){FILE*f=fopen("giant","w"); char b[65536]={0};'
        " for(;;) fwrite(b,1,sizeof b,f);}\n",
        Status.OUTPUT_LIMIT,
    ),
    hostile(
        "py_many_small_files",
        "python",
        "for i in range(1000): open(f'small{i}', 'w').write('x')\nprint('done')\n",
        Status.OK,
    ),
    hostile(
        "py_inode_flood",
        "python",
        "try:\n    for i in range(10**6):\n        with open(f'e{i}', 'w'): pass\n"
        "except OSError as error:\n    print('stopped', error.errno)\n",
        Status.OK,
    ),
    hostile(
        "py_daemon_outlives_run",
        "python",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.close(1); os.close(2)\n        time.sleep(120)\n    os._exit(0)\nprint('parent leaves')\n",
        Status.OK,
    ),
    hostile(
        "c_daemon_outlives_run",
        "c",
        "#include <unistd.h>\nint main(){if(fork()==0){setsid(); if(fork()==0){"
        "close(1);close(2); sleep(120);} _exit(0);} return 0;}\n",
        Status.OK,
    ),
    hostile(
        "py_kill_everything",
        "python",
        "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
        {Status.KILLED, Status.OK, Status.NONZERO_EXIT},
    ),
    hostile(
        "py_kill_parent",
        "python",
        "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(0.2)\nprint('still here')\n",
        {Status.OK, Status.KILLED, Status.NONZERO_EXIT},
    ),
    hostile(
        "py_close_pipes",
        "python",
        "import os, time\nos.close(0); os.close(1); os.close(2)\ntime.sleep(0.3)\n",
        {Status.OK, Status.NONZERO_EXIT},
    ),
    hostile("py_sigstop_group", "python", "import os, signal\nos.killpg(0, signal.SIGSTOP)\n", Status.TIMEOUT),
    hostile(
        "py_network_loopback",
        "python",
        "import socket\ns = socket.create_connection(('127.0.0.1', 6379), timeout=1)\nprint('CONNECTED')\n",
        ANY_FAILURE,
        needs_isolation=True,
    ),
    hostile(
        "py_network_outside",
        "python",
        "import socket\ns = socket.create_connection(('1.1.1.1', 53), timeout=1)\nprint('CONNECTED')\n",
        ANY_FAILURE,
        needs_isolation=True,
    ),
    hostile(
        "c_network_loopback",
        "c",
        "#include <sys/socket.h>\n#include <netinet/in.h>\n#include <arpa/inet.h>\n"
        "int main(){int s=socket(AF_INET,SOCK_STREAM,0); struct sockaddr_in a={0}; a.sin_family=AF_INET;"
        ' a.sin_port=htons(6379); inet_pton(AF_INET,"127.0.0.1",&a.sin_addr);'
        " return connect(s,(struct sockaddr*)&a,sizeof a)==0 ? 0 : 7;}\n",
        {Status.NONZERO_EXIT},
        needs_isolation=True,
    ),
    hostile("py_setuid_root", "python", "import os\nos.setuid(0)\nprint('ROOT')\n", Status.NONZERO_EXIT),
    hostile(
        "py_ptrace_via_proc_mem",
        "python",
        "import os\nfor pid in os.listdir('/proc'):\n    if pid.isdigit() and int(pid) != os.getpid():\n"
        "        try: open(f'/proc/{pid}/mem','rb').read(1); print('READ', pid)\n        except OSError: pass\n",
        Status.OK,
    ),
    hostile(
        "py_mount_attempt",
        "python",
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "rc = libc.mount(b'none', b'/usr', b'tmpfs', 0, None)\nraise SystemExit(0 if rc == 0 else 5)\n",
        Status.NONZERO_EXIT,
    ),
]


def c_program(source: str, token: str) -> Program:
    binary = f"h_{token}"
    return Program(command=("sh", "-c", f"gcc -O0 -w -o {binary} main.c && exec ./{binary}"), files={"main.c": source})


def python_program(source: str, token: str) -> Program:
    return Program(command=("python3", f"h_{token}.py"), files={f"h_{token}.py": source})


def _available_backends() -> list[str]:
    return [name for name in BACKEND_NAMES if probe_backend(name) is None]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_program_gets_the_same_status_on_every_backend(case: Hostile, token: str, nothing_left):
    """Each backend CI has runs the program; each status must be an expected one, and all must be the same
    (the process backend sits out the isolation cases: it shares the host's network and files by design)."""
    build = c_program if case.language == "c" else python_program
    limits = HOSTILE_SHORT if Status.TIMEOUT in case.expect else HOSTILE
    statuses = {}
    for backend in _available_backends():
        if case.needs_isolation and backend == "process":
            continue
        if case.needs_cgroup and backend == "process" and not HOST_CGROUPS:
            continue
        result = run(build(case.source, token), limits, backend)
        statuses[backend] = result.status
        assert result.status in case.expect, (backend, result.status, result.detail, result.stderr[-300:])
        assert b"CONNECTED" not in result.stdout and b"ROOT" not in result.stdout and b"READ" not in result.stdout
        if case.name == "py_inode_flood" and (backend != "process" or os.geteuid() == 0):  # root: tmpfs work dirs
            assert result.stdout.startswith(b"stopped"), f"{backend}: the work dir must cap the number of files"
        nothing_left(token)
        follow_up = run(Program(("python3", "-c", "print('alive')")), HOSTILE, backend)
        assert follow_up.status is Status.OK and follow_up.stdout == b"alive\n", (backend, follow_up)
    if not statuses:
        pytest.skip("no backend here can run this case")
    assert len(set(statuses.values())) == 1, f"backends disagree: {statuses}"


def test_nothing_persists_into_the_next_run(backend: str, token: str):
    writer = "import os\nfor i in range(200): open(f'left{i}', 'w').write('x')\n"
    if backend != "process":  # the process backend shares the host's /tmp and /dev/shm
        writer += "open('/tmp/left_in_tmp', 'w').write('x')\nopen('/dev/shm/left_in_shm', 'w').write('x')\n"
    assert run(python_program(writer, token), HOSTILE, backend).status is Status.OK
    reader = (
        "import os\nprint(sorted(os.listdir('.')))\n"
        "print(os.path.exists('/tmp/left_in_tmp'), os.path.exists('/dev/shm/left_in_shm'))\n"
    )
    result = run(Program(("python3", "reader.py"), files={"reader.py": reader}), HOSTILE, backend)
    assert result.stdout.splitlines()[0] == b"['reader.py']"
    if backend != "process":  # the process backend shares the host's /tmp
        assert result.stdout.splitlines()[1] == b"False False"


def test_host_environment_and_home_are_invisible(backend: str, monkeypatch):
    monkeypatch.setenv("VERIFARM_TEST_SECRET", "hunter2-env-secret")
    code = (
        "import os\nprint(sorted(os.environ.items()))\n"
        "try: print(os.listdir('/root'))\nexcept OSError as e: print('denied', e.errno)\n"
    )
    result = run(Program(("python3", "main.py"), files={"main.py": code}), HOSTILE, backend)
    assert result.status is Status.OK
    assert b"hunter2-env-secret" not in result.stdout
    assert b"denied" in result.stdout or b"[]" in result.stdout.splitlines()[1]


@pytest.mark.skipif(os.geteuid() != 0, reason="host secrets are only protected from a private uid when we are root")
def test_host_secret_file_is_unreadable(backend: str, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2-file-secret")
    secret.chmod(0o600)
    code = (
        f"for path in [{str(secret)!r}, '/etc/shadow', '/root/.bashrc']:\n"
        "    try: print(open(path).read())\n    except OSError as e: print('denied', path)\n"
    )
    result = run(Program(("python3", "main.py"), files={"main.py": code}), HOSTILE, backend)
    assert b"hunter2-file-secret" not in result.stdout and b"root:" not in result.stdout


def test_writes_outside_the_work_dir_do_not_reach_the_host(backend: str, token: str):
    targets = ["/etc/" + token, "/usr/" + token, "/root/" + token, "/" + token]
    if backend != "process":  # the process backend shares the host's world-writable /tmp
        targets.append("/tmp/" + token)
    code = (
        f"for path in {targets!r}:\n    try: open(path, 'w').write('pwned')\n    except OSError: pass\n"
        "import os\ntry: os.symlink('/etc', 'etc_link'); open('etc_link/" + token + "', 'w').write('x')\n"
        "except OSError: pass\n"
    )
    run(Program(("python3", "main.py"), files={"main.py": code}), HOSTILE, backend)
    for path in targets + ["/etc/" + token]:
        assert not os.path.exists(path), f"the sandbox wrote {path} on the host"


def compile_and_run_c(source: str, backend: str) -> LanguageRun:
    """Compile source as C under the short hostile limits, then run it once on empty stdin."""
    return compile_and_run("c", source, [b""], backend, compile_limits=HOSTILE_SHORT)


def test_compile_bombs_are_contained(backend: str):
    random_include = compile_and_run_c("#include </dev/random>\n", backend)
    assert random_include.compile.status in ANY_FAILURE and random_include.runs == []
    explosion = (
        "#define A(x) x x x x x x x x\n#define B(x) A(A(A(A(x))))\n#define C(x) B(B(B(x)))\n"
        "int main(){ C(C(int v;)) return 0; }\n"
    )
    exploded = compile_and_run_c(explosion, backend)
    assert exploded.compile.status in ANY_FAILURE and exploded.runs == []
    assert len(exploded.compile.stdout) + len(exploded.compile.stderr) <= HOSTILE.output_bytes
    errors = compile_and_run_c("int main( { return 0 }\n" * 5000, backend)
    assert errors.compile.status in ANY_FAILURE and errors.runs == []
    assert len(errors.compile.stderr) <= HOSTILE.output_bytes


MEMORY_SCAN = """
import hashlib, sys
# Only the secret's hash and length are given, so the secret itself can only be in memory if it leaked.
digest, length, prefix = sys.argv[1], int(sys.argv[2]), b'secret-'
found = False
with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:
    for line in maps:
        span, perms = line.split()[:2]
        if 'r' not in perms or '[vvar' in line or '[vsyscall' in line:
            continue
        start, end = (int(part, 16) for part in span.split('-'))
        try:
            mem.seek(start)
            data = mem.read(end - start)
        except (OSError, ValueError, OverflowError):
            continue
        at = data.find(prefix)
        while at >= 0:
            if hashlib.sha256(data[at:at + length]).hexdigest() == digest:
                found = True
            at = data.find(prefix, at + 1)
print('FOUND' if found else 'clean')
"""


def test_python_fast_path_leaves_no_process_and_no_memory_of_earlier_runs(backend: str, token: str):
    """`python3 -I -S script` runs through the docker fork server: a daemon must still die with its run,
    and a later run must not find an earlier run's stdin or files in its own (forked) memory."""
    secret = f"secret-{token}-{token[::-1]}"
    daemon = (
        "import os, sys, time\nsys.stdin.read()\nif os.fork() == 0:\n    os.setsid()\n"
        "    if os.fork() == 0:\n        time.sleep(120)\n    os._exit(0)\n"
    )
    first = run(
        Program(
            ("python3", "-I", "-S", "daemon.py"),
            files={"daemon.py": daemon, "notes.txt": secret},
            stdin=secret.encode(),
        ),
        HOSTILE,
        backend,
    )
    assert first.status is Status.OK, first
    # pid 1 is bwrap's own init in the bwrap backend; the docker agent and fork server run as root.
    census = (
        "import os\nmine = (os.getpid(), os.getppid(), 1)\nothers = [p for p in os.listdir('/proc')"
        " if p.isdigit() and int(p) not in mine and os.stat('/proc/' + p).st_uid == os.getuid()]\n"
        "print(len(others))\n"
    )
    counted = run(Program(("python3", "-I", "-S", "census.py"), files={"census.py": census}), HOSTILE, backend)
    assert counted.stdout == b"0\n", counted
    digest = hashlib.sha256(secret.encode()).hexdigest()
    scan = run(
        Program(("python3", "-I", "-S", "scan.py", digest, str(len(secret))), files={"scan.py": MEMORY_SCAN}),
        HOSTILE,
        backend,
    )
    assert scan.status is Status.OK and scan.stdout == b"clean\n", scan


def test_concurrent_runs_cannot_see_each_other(backend: str, token: str):
    """While one run holds a secret in its work dir, another run on the same backend looks for it through
    every process it can see (/proc/<pid>/cwd, environ, fds) and through the shared temp folders."""
    secret = f"concurrent-secret-{token}"
    holder = Program(
        ("python3", "hold.py"),
        files={
            "hold.py": (
                f"import time\nopen('secret.txt', 'w').write({secret!r})\nkeep = open('secret.txt')\ntime.sleep(3)\n"
            )
        },
    )
    seeker = Program(
        ("python3", "seek.py"),
        files={
            "seek.py": (
                "import glob, os\nfound = []\n"
                "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
                "    for path in glob.glob(f'/proc/{pid}/fd/*') + [f'/proc/{pid}/cwd/secret.txt', f'/proc/{pid}/environ']:\n"
                "        try: found.append(open(path, 'rb').read(4096))\n        except OSError: pass\n"
                "for path in glob.glob('/tmp/**/secret.txt', recursive=True):\n"
                "    try: found.append(open(path, 'rb').read())\n    except OSError: pass\n"
                f"print('FOUND' if any({secret!r}.encode() in blob for blob in found) else 'nothing')\n"
            )
        },
    )
    held = []
    thread = threading.Thread(target=lambda: held.append(run(holder, HOSTILE, backend)))
    thread.start()
    time.sleep(1.0)
    seen = run(seeker, HOSTILE, backend)
    thread.join()
    assert held and held[0].status is Status.OK, held
    assert seen.status is Status.OK and seen.stdout == b"nothing\n", seen
