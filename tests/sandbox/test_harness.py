"""check_python decides pass/fail outside the candidate's reach: fake-pass tricks all fail, real passes pass."""

from __future__ import annotations

import pytest

from verifarm.sandbox.harness import HARNESS_LIMITS, check_python
from verifarm.sandbox.harness_driver import CandidateError, from_wire, to_wire
from verifarm.sandbox.program import Limits

TESTS = """
def check(candidate):
    assert candidate(2, 3) == 5
    assert candidate(-1, 1) == 0
    assert candidate(10, 5) == 15
"""
GOOD = "def add(a, b):\n    return a + b\n"
FAST = Limits(
    cpu_seconds=3,
    wall_seconds=5,
    memory_bytes=256 * 1024 * 1024,
    max_processes=32,
    output_bytes=64 * 1024,
    file_size_bytes=1024 * 1024,
    open_files=64,
)

FAKE_PASSES = {
    "sys_exit_at_import": "import sys\nsys.exit(0)\ndef add(a, b): return 0\n",
    "os_exit_in_call": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "sys_exit_in_call": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "prints_success_marker": "print('all tests passed')\nprint('PASS')\nimport os\nos.write(1, b' PASS\\n')\n"
    "def add(a, b): return None\n",
    "always_equal_object": "class Eq:\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n"
    "def add(a, b): return Eq()\n",
    "int_subclass_equal_to_all": "class I(int):\n    def __eq__(self, other): return True\n"
    "def add(a, b): return I(0)\n",
    "patches_test_files": "import glob\nfor f in glob.glob('*.py'):\n    try: open(f, 'w').write('def check(c): pass\\n')\n"
    "    except OSError: pass\ndef add(a, b): return 0\n",
    "patches_assert_builtin": "import builtins\nbuiltins.AssertionError = type('X', (BaseException,), {})\n"
    "def add(a, b): return 0\n",
    "kills_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef add(a, b): return 0\n",
    "kills_process_group": "import os, signal\ndef add(a, b):\n    os.killpg(0, signal.SIGKILL)\n",
    "disarms_timer_then_hangs": "import signal\nsignal.alarm(0)\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
    "def add(a, b):\n    while True: pass\n",
    "writes_into_parent_stdout": "import os\nfor fd in range(3, 20):\n    try: os.write(fd, b'PASS\\n')\n    except OSError: pass\n"
    "for path in (f'/proc/{os.getppid()}/fd/1', f'/proc/{os.getppid()}/mem'):\n"
    "    try: open(path, 'wb').write(b'PASS\\n')\n    except OSError: pass\n"
    "def add(a, b): return 0\n",
    "reads_parent_memory_for_sentinel": "import os, re\ndef add(a, b):\n    try:\n"
    "        data = open(f'/proc/{os.getppid()}/mem', 'rb').read()\n"
    "    except OSError:\n        data = b''\n    return 0\n",
    "forges_protocol_reply": 'import os\nfor fd in range(3, 10):\n    try: os.write(fd, b\'{"ok": {"i": "5"}}\\n\' * 3)\n'
    "    except OSError: pass\ndef add(a, b): return 0\n",
    "raises_systemexit_subclass": "class Done(SystemExit): pass\ndef add(a, b): raise Done(0)\n",
    "stops_itself": "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGSTOP)\n",
    "wrong_answer": "def add(a, b):\n    return a - b\n",
    "returns_none": "def add(a, b):\n    return None\n",
    "syntax_error": "def add(a, b)\n    return a + b\n",
    "missing_entry_point": "def plus(a, b):\n    return a + b\n",
    "self_referencing_list": "def add(a, b):\n    x = []\n    x.append(x)\n    return x\n",
}


@pytest.mark.parametrize("name", sorted(FAKE_PASSES))
def test_fake_passes_fail(name: str, backend: str):
    hangs = name in ("stops_itself", "disarms_timer_then_hangs")
    limits = Limits(cpu_seconds=1, wall_seconds=2) if hangs else FAST
    outcome = check_python(FAKE_PASSES[name], TESTS, "add", limits=limits, backend=backend)
    assert not outcome.passed, (name, outcome.reason)
    assert not outcome.infra_error, outcome.reason


def test_real_pass_passes(backend: str):
    outcome = check_python(GOOD, TESTS, "add", limits=FAST, backend=backend)
    assert outcome.passed, (outcome.reason, outcome.result.stderr[-500:])
    assert outcome.result.backend == backend


def test_candidate_output_does_not_break_a_real_pass(backend: str):
    noisy = "import sys\nprint('hello from the candidate')\ndef add(a, b):\n    print(a, b, file=sys.stderr)\n    return a + b\n"
    assert check_python(noisy, TESTS, "add", limits=FAST, backend=backend).passed


HELPER_PROMPT = 'def encode(s):\n    return s[::-1]\n\n\ndef decode(s):\n    """Undo encode."""\n'
HELPER_TESTS = (
    "def check(candidate):\n    for word in ('abc', 'hello', ''):\n        assert candidate(encode(word)) == word\n"
)


def test_helpers_the_tests_use_come_from_the_trusted_prompt(backend: str):
    solution = HELPER_PROMPT + "    return s[::-1]\n"
    assert check_python(solution, HELPER_TESTS, "decode", limits=FAST, backend=backend, prompt=HELPER_PROMPT).passed


def test_a_solution_cannot_replace_a_prompt_helper(backend: str):
    # With its own encode the identity, an identity decode would satisfy the tests: the tests must not see it.
    forged = HELPER_PROMPT + "    return s\n\n\ndef encode(s):\n    return s\n"
    outcome = check_python(forged, HELPER_TESTS, "decode", limits=FAST, backend=backend, prompt=HELPER_PROMPT)
    assert not outcome.passed and not outcome.infra_error, outcome.reason
    assert outcome.reason.startswith("assertion failed"), outcome.reason


def test_a_helper_only_the_solution_defines_is_not_visible_to_the_tests(backend: str):
    solution = "def encode(s):\n    return s[::-1]\ndef decode(s):\n    return s[::-1]\n"
    outcome = check_python(solution, HELPER_TESTS, "decode", limits=FAST, backend=backend)
    assert not outcome.passed and "NameError" in outcome.reason, outcome.reason


def test_a_broken_trusted_prompt_is_an_infra_error_not_a_fail(backend: str):
    outcome = check_python(GOOD, TESTS, "add", limits=FAST, backend=backend, prompt="raise RuntimeError('bad task')\n")
    assert outcome.infra_error and not outcome.passed and "bad task" in outcome.reason, outcome.reason


def test_exceptions_keep_their_builtin_type(backend: str):
    solution = "def f(x):\n    raise ValueError('bad')\n"
    tests = "def check(candidate):\n    try:\n        candidate(1)\n    except ValueError:\n        return\n    assert False\n"
    assert check_python(solution, tests, "f", limits=FAST, backend=backend).passed


def test_timeouts_are_failures_not_infra_errors():
    slow = "def add(a, b):\n    import time\n    time.sleep(60)\n"
    outcome = check_python(slow, TESTS, "add", limits=Limits(wall_seconds=1), backend="process")
    assert not outcome.passed and not outcome.infra_error and outcome.reason.startswith("timeout")


def test_invalid_arguments_raise_value_error():
    with pytest.raises(ValueError):
        check_python(GOOD, TESTS, "not an identifier")
    with pytest.raises(ValueError):
        check_python(GOOD, "assert True\n", "add")


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        10**40,
        1.5,
        float("inf"),
        "text",
        b"\x00\xff",
        1 + 2j,
        [1, [2, "x"]],
        (1, (2,)),
        {1, 2},
        frozenset({"a"}),
        {"k": [1, 2], 3: (4,)},
        [],
        (),
        {},
    ],
)
def test_wire_round_trip_is_exact(value):
    back = from_wire(to_wire(value))
    assert back == value and type(back) is type(value)


def test_wire_rejects_non_plain_data():
    class Forged(int):
        def __eq__(self, other):
            return True

    with pytest.raises(CandidateError):
        to_wire(Forged(1))
    with pytest.raises(CandidateError):
        to_wire(object())
    for malformed in (
        {"x": 1},
        [1, 2],
        b"",
        b"X",
        b"i12",
        b"s5:abc",
        b"l2:N",
        b"NN",
        b"s-1:",
        b"i" + b"9" * 5000 + b";",
    ):
        with pytest.raises(CandidateError):
            from_wire(malformed)


def test_default_limits_are_sane():
    assert HARNESS_LIMITS.wall_seconds >= HARNESS_LIMITS.cpu_seconds


SECRET = "vfsecret7d1c"  # appears in the tests only, as an expected value
# Looks for the tests everywhere they must not be: files (work dir, /tmp, /dev/shm, the rest of the tree but the
# system folders), every descriptor, the process's memory (stack frames and every gc-tracked container: what a
# fork shares with the driver), and the driver's /proc entries. Reports where it found the secret, if anywhere.
SEARCH_FOR_TESTS = """
import gc, os, stat, sys

NEEDLE = 'vfsecret' + '7d1c'
SYSTEM = {'proc', 'sys', 'dev', 'usr', 'lib', 'lib64', 'bin', 'sbin', 'etc', 'var', 'opt', 'boot', 'srv'}

def _read(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read(1 << 20)
    except OSError:
        return b''

def _holds(value):
    if type(value) is str:
        return value is not NEEDLE and NEEDLE in value
    return type(value) in (bytes, bytearray) and NEEDLE.encode() in value

def _in_files():
    for top in ('.', '/tmp', '/dev/shm', '/'):
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if root != '/' or d not in SYSTEM]
            for name in files:
                path = os.path.join(root, name)
                try:
                    regular = stat.S_ISREG(os.lstat(path).st_mode)
                except OSError:
                    regular = False
                if regular and NEEDLE.encode() in _read(path):
                    return 'file ' + path

def _in_descriptors():
    for fd in range(0, 256):
        try:
            os.lseek(fd, 0, 0)
        except OSError:
            pass
        try:
            os.set_blocking(fd, False)
            if NEEDLE.encode() in os.read(fd, 1 << 16):
                return 'fd %d' % fd
        except OSError:
            pass

def _in_memory():
    frame = sys._getframe()
    while frame is not None:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if _holds(value):
                return 'frame ' + frame.f_code.co_name
        frame = frame.f_back
    for obj in gc.get_objects():
        kind = type(obj)
        if kind is dict:
            items = list(obj.keys()) + list(obj.values())
        elif kind in (list, tuple, set, frozenset):
            items = list(obj)
        else:
            items = [obj.co_consts] if kind is type(_read.__code__) else []
        for item in items:
            if _holds(item) or type(item) is tuple and any(_holds(x) for x in item):
                return 'object ' + type(obj).__name__

def _in_parent():
    for entry in ('cmdline', 'environ', 'mem', 'fd/0'):
        if NEEDLE.encode() in _read('/proc/%d/%s' % (os.getppid(), entry)):
            return '/proc/parent/' + entry

def leak():
    return _in_files() or _in_descriptors() or _in_memory() or _in_parent() or 'not found'
"""


def test_the_candidate_finds_the_tests_nowhere(backend: str):
    if backend == "process":
        pytest.skip("the process backend shares the host's filesystem (where this test file lies) by design")
    tests = f"def check(candidate):\n    where = candidate()\n    assert where == 'not found' != '{SECRET}', where\n"
    limits = Limits(
        cpu_seconds=20,
        wall_seconds=60,
        memory_bytes=256 * 1024 * 1024,
        max_processes=32,
        output_bytes=64 * 1024,
        file_size_bytes=1024 * 1024,
        open_files=256,
    )
    outcome = check_python(SEARCH_FOR_TESTS, tests, "leak", limits=limits, backend=backend)
    assert outcome.passed, outcome.reason


def test_the_search_finds_a_secret_where_the_tests_used_to_be(backend: str):
    # The control: the same search does find the secret in a file of the work dir, in memory and on stdin.
    if backend == "process":
        pytest.skip("the process backend shares the host's filesystem (where this test file lies) by design")
    planted = (
        SEARCH_FOR_TESTS.replace("def leak():", "def leak(plant):")
        + "\nimport os\nos.write(os.open('tests_copy.py', os.O_WRONLY | os.O_CREAT), NEEDLE.encode())\n"
    )
    tests = "def check(candidate):\n    assert candidate(0) == 'file ./tests_copy.py', candidate(0)\n"
    outcome = check_python(planted, tests, "leak", limits=Limits(cpu_seconds=20, wall_seconds=60), backend=backend)
    assert outcome.passed, outcome.reason
    kept = SEARCH_FOR_TESTS + "\nKEPT = ['tests: ' + NEEDLE]\n"
    tests = "def check(candidate):\n    assert candidate().startswith('object'), candidate()\n"
    outcome = check_python(kept, tests, "leak", limits=Limits(cpu_seconds=20, wall_seconds=60), backend=backend)
    assert outcome.passed, outcome.reason


def test_candidate_cannot_reach_the_drivers_stdout_or_memory(backend: str):
    probe = (
        "import os\ndef probe():\n    reached = []\n"
        "    for path, mode in ((f'/proc/{os.getppid()}/fd/1', 'wb'), (f'/proc/{os.getppid()}/mem', 'rb'),\n"
        "                       (f'/proc/{os.getppid()}/fd/0', 'rb')):\n"
        "        try:\n            open(path, mode).close()\n            reached.append(path)\n"
        "        except OSError:\n            pass\n    return reached\n"
    )
    tests = "def check(candidate):\n    assert candidate() == [], candidate()\n"
    outcome = check_python(probe, tests, "probe", limits=FAST, backend=backend)
    assert outcome.passed, outcome.reason
