"""In-sandbox test driver for check_python; shipped as a file into the run, standard library only.

Two processes: this trusted driver runs the tests, a forked child runs the candidate. Every call to a
candidate function crosses a pipe as length-prefixed tagged plain data, rebuilt here from builtins, so the
candidate can forge neither a value (`__eq__`), nor the test code, nor the verdict. The driver is made
non-dumpable before forking, so the child cannot read its memory or file descriptors through /proc or
ptrace.

What the candidate can never read: the tests and their expected values. They are not a file of the run;
they arrive on stdin (with the per-run sentinel) and the driver reads stdin only after the fork, when the
child has already closed its copy of fd 0 and every other inherited descriptor. Nothing of them is in
the memory the child shares by fork, nothing is written anywhere. What the candidate can never replace:
anything but the entry point. The trusted prompt (the task's own code: helpers such as an encoder whose
decoder the candidate writes) runs here, in the driver, before the fork; the tests run in that namespace
with only the entry point bound to the candidate, so a candidate that redefines a helper changes its own
copy, never the one the tests call. The sentinel is printed only after every test ran.
Usage: python3 -I -S driver.py SOLUTION_FILE PROMPT_FILE ENTRY_POINT   (stdin: sentinel line, then the tests)
"""

# Only built-in modules: json, ast, ctypes and signal would cost more start-up time than the tests.
import _ctypes
import _signal  # type: ignore[import-not-found]  # CPython's C half of `signal`; typeshed has no stub for it
import builtins
import math
import os
import sys

DRIVER_FILE_NAME = "driver.py"  # the name check_python gives this file in the run (the fork server precompiles it)
PR_SET_DUMPABLE = 4
MAX_DEPTH = 64
SIGKILL = 9
MAX_FD = 1 << 16  # above any RLIMIT_NOFILE the sandbox grants
CodeType = type(compile("", "", "exec"))


class CandidateError(Exception):
    """The candidate raised, died, or returned something that is not plain data."""


def to_wire(value, depth=0):
    """Plain data to length-prefixed tagged bytes; anything else is refused (no forged __eq__ can cross)."""
    if depth > MAX_DEPTH:
        raise CandidateError("value nested too deeply")
    kind = type(value)
    if value is None:
        return b"N"
    if kind is bool:
        return b"T" if value else b"F"
    if kind is int:
        return b"i" + str(value).encode() + b";"
    if kind is float:
        return b"f" + repr(value).encode() + b";"
    if kind is complex:
        return b"c" + repr(value.real).encode() + b";" + repr(value.imag).encode() + b";"
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
        return b"s" + str(len(data)).encode() + b":" + data
    if kind is bytes:
        return b"b" + str(len(value)).encode() + b":" + value
    tags: dict[type, bytes] = {list: b"l", tuple: b"t", set: b"S", frozenset: b"z", dict: b"d"}
    tag = tags.get(kind)
    if tag is None:
        raise CandidateError(f"value of type {kind.__name__} is not plain data")
    items = value.items() if kind is dict else value
    parts = [tag, str(len(value)).encode(), b":"]
    for item in items:
        if kind is dict:
            parts.append(to_wire(item[0], depth + 1))
            parts.append(to_wire(item[1], depth + 1))
        else:
            parts.append(to_wire(item, depth + 1))
    return b"".join(parts)


def from_wire(data):
    """Rebuild a value from to_wire's bytes using builtins only; malformed input raises CandidateError."""
    if type(data) is not bytes:
        raise CandidateError("malformed value from candidate")
    try:
        value, end = _decode(data, 0, 0)
    except (ValueError, IndexError, TypeError, OverflowError, RecursionError, UnicodeDecodeError):
        raise CandidateError("malformed value from candidate") from None
    if end != len(data):
        raise CandidateError("malformed value from candidate")
    return value


def _number(data, position):
    end = data.index(b";", position)
    return data[position:end].decode("ascii"), end + 1


def _decode(data, position, depth):
    if depth > MAX_DEPTH:
        raise CandidateError("value nested too deeply")
    tag = data[position : position + 1]
    position += 1
    if tag == b"N":
        return None, position
    if tag == b"T":
        return True, position
    if tag == b"F":
        return False, position
    if tag == b"i":
        text, position = _number(data, position)
        return int(text), position
    if tag == b"f":
        text, position = _number(data, position)
        return float(text), position
    if tag == b"c":
        real, position = _number(data, position)
        imag, position = _number(data, position)
        return complex(float(real), float(imag)), position
    colon = data.index(b":", position)
    count = int(data[position:colon].decode("ascii"))
    if count < 0:
        raise ValueError("negative length")
    position = colon + 1
    if tag in (b"s", b"b"):
        chunk = data[position : position + count]
        if len(chunk) != count:
            raise ValueError("truncated")
        value = chunk.decode("utf-8", "surrogatepass") if tag == b"s" else bytes(chunk)
        return value, position + count
    if tag in (b"l", b"t", b"S", b"z", b"d"):
        items = []
        for _ in range(count * 2 if tag == b"d" else count):
            item, position = _decode(data, position, depth + 1)
            items.append(item)
        if tag == b"d":
            return dict(zip(items[0::2], items[1::2])), position
        return {b"l": list, b"t": tuple, b"S": set, b"z": frozenset}[tag](items), position
    raise ValueError("unknown tag")


def send(fd, payload):
    data = str(len(payload)).encode() + b"\n" + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def receive(stream):
    header = stream.readline()
    if not header:
        raise CandidateError("candidate process ended early")
    try:
        size = int(header)
    except ValueError:
        raise CandidateError("malformed message from candidate") from None
    payload = stream.read(size)
    if size < 0 or len(payload) != size:
        raise CandidateError("candidate process ended early")
    return payload


def serve_candidate(solution_code, request_fd, reply_fd):
    """Child: run the candidate's module, then answer call requests until the pipe closes."""
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    exec(solution_code, namespace)
    requests = os.fdopen(request_fd, "rb")
    while True:
        try:
            name, args = from_wire(receive(requests))
        except CandidateError:
            os._exit(0)
        try:
            # Whatever the candidate bound to the name; calling a non-function raises, and the error is the reply.
            reply = b"R" + to_wire(namespace[name](*args))  # type: ignore[operator]
        except BaseException as error:  # the candidate's exception is data for the driver
            reply = b"E" + to_wire((type(error).__name__, str(error)[:500]))
        send(reply_fd, reply)


class CandidateProxy:
    """Stands in the driver for a function of the candidate; calls cross the pipe as plain data."""

    def __init__(self, name, request_fd, replies):
        self.name, self.request_fd, self.replies = name, request_fd, replies

    def __call__(self, *args):
        try:
            send(self.request_fd, to_wire((self.name, list(args))))
        except OSError:
            raise CandidateError("candidate process ended early") from None
        reply = receive(self.replies)
        if reply[:1] == b"R":
            return from_wire(reply[1:])
        raised = from_wire(reply[1:]) if reply[:1] == b"E" else None
        if type(raised) is not tuple or len(raised) != 2 or type(raised[0]) is not str:
            raise CandidateError("malformed reply from candidate")
        builtin_error = getattr(builtins, raised[0], None)
        if isinstance(builtin_error, type) and issubclass(builtin_error, Exception):
            raise builtin_error(str(raised[1]))
        raise CandidateError(f"{raised[0]}: {raised[1]}")


def defines_function(solution_code, name):
    """Whether the module defines function `name` at top level, read from its code object (nothing runs)."""
    return any(type(const) is CodeType and const.co_name == name for const in solution_code.co_consts)


def read_all(fd):
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def close_inherited_fds(keep):
    """In the child: every descriptor but `keep` goes, so nothing the driver or the sandbox opened is reachable."""
    highest = max(keep)
    for fd in range(3, highest):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    os.closerange(highest + 1, MAX_FD)


def make_non_dumpable():
    """prctl(PR_SET_DUMPABLE, 0): the candidate (same uid) may no longer ptrace us or open /proc/<us>/..."""
    libc = _ctypes.dlopen(None)  # type: ignore[arg-type]  # None opens the program itself, as in dlopen(3)
    if _ctypes.call_function(_ctypes.dlsym(libc, "prctl"), (PR_SET_DUMPABLE, 0, 0, 0, 0)) != 0:
        raise OSError("prctl(PR_SET_DUMPABLE) failed")


def run_prompt(prompt_source):
    """The trusted prompt's namespace (its helpers and imports), or the reason it failed to run."""
    namespace = {"__name__": "__tests__", "__builtins__": builtins, "math": math}
    try:
        exec(compile(prompt_source, "prompt.py", "exec"), namespace)
    except BaseException as error:
        return None, f"{type(error).__name__}: {str(error)[:200]}"
    return namespace, None


def start_candidate(solution_code):
    """Fork the candidate's process; returns (pid, request fd, reply stream). Called before any test is read."""
    make_non_dumpable()
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(0)  # the tests and the sentinel arrive there; the candidate never reads them
        os.dup2(2, 1)  # candidate prints go to stderr, never to the verdict channel
        close_inherited_fds((request_read, reply_write))
        try:
            serve_candidate(solution_code, request_read, reply_write)
        except BaseException as error:
            os.write(2, f"candidate failed to load: {type(error).__name__}: {error}\n".encode()[:2000])
        os._exit(0)
    os.close(request_read)
    os.close(reply_write)
    return child, request_write, os.fdopen(reply_read, "rb")


def run_tests(namespace, tests_source, entry_point):
    """The failure line for the verdict channel, or None when check(candidate) returned."""
    try:
        exec(compile(tests_source, "tests.py", "exec"), namespace)
        check = namespace.get("check")
        if not callable(check):
            return "FAIL the test code defines no check(candidate)"
        check(namespace[entry_point])
    except AssertionError as error:
        return f"FAIL assertion failed {str(error)[:200]}".rstrip()
    except BaseException as error:
        return f"FAIL {type(error).__name__}: {str(error)[:200]}"
    return None


def main():
    solution_path, prompt_path, entry_point = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(solution_path) as handle:
        solution_source = handle.read()
    with open(prompt_path) as handle:
        prompt_source = handle.read()
    try:
        solution_code = compile(solution_source, "solution.py", "exec")
    except (SyntaxError, ValueError) as error:
        print(f"FAIL syntax error: {error}", flush=True)
        return
    if not defines_function(solution_code, entry_point):
        print(f"FAIL the solution defines no function {entry_point!r}", flush=True)
        return
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)  # a candidate gone early is an error here, not our death
    namespace, prompt_error = run_prompt(prompt_source)
    if prompt_error is not None:  # the task's own code is broken: not the candidate's failure
        sentinel = read_all(0).split(b"\n", 1)[0].decode().strip()
        print(f"{sentinel} ERROR the trusted prompt failed: {prompt_error}", flush=True)
        return
    child, request_write, replies = start_candidate(solution_code)
    # Only now, with the candidate forked and its fd 0 closed, do the tests exist in this process.
    sentinel_line, _, tests = read_all(0).partition(b"\n")
    sentinel = sentinel_line.decode().strip()
    namespace[entry_point] = CandidateProxy(entry_point, request_write, replies)
    try:
        failure = run_tests(namespace, tests.decode("utf-8", "surrogatepass"), entry_point)
    finally:
        try:
            os.kill(child, SIGKILL)
            os.waitpid(child, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    if failure is not None:
        print(failure, flush=True)
        return
    print(f"{sentinel} PASS", flush=True)


if __name__ == "__main__":
    main()
