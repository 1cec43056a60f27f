"""In-sandbox test driver for check_python; shipped as a file into the run, standard library only.

Two processes: this trusted driver runs the tests, a forked child runs the candidate. Every call to a
candidate function crosses a pipe as length-prefixed tagged plain data, rebuilt here from builtins, so the
candidate can forge neither a value (`__eq__`), nor the test code, nor the verdict. The driver is made
non-dumpable before forking, so the child cannot read its memory or file descriptors through /proc or
ptrace. The sentinel arrives on stdin only after the fork and is printed only after every test ran.
Usage: python3 -I -S driver.py SOLUTION_FILE TESTS_FILE ENTRY_POINT   (sentinel line on stdin)
"""

# Only built-in modules: json, ast, ctypes and signal would cost more start-up time than the tests.
import _ctypes
import builtins
import math
import os
import sys

DRIVER_FILE_NAME = "driver.py"  # the name check_python gives this file in the run (the fork server precompiles it)
PR_SET_DUMPABLE = 4
MAX_DEPTH = 64
SIGKILL = 9
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
    tag = {list: b"l", tuple: b"t", set: b"S", frozenset: b"z", dict: b"d"}.get(kind)
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
    tag = data[position:position + 1]
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
        chunk = data[position:position + count]
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
        view = view[os.write(fd, view):]


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
            reply = b"R" + to_wire(namespace[name](*args))
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


def top_level_functions(solution_code):
    """Names of the functions the module defines at top level, read from its code object (nothing runs)."""
    return [const.co_name for const in solution_code.co_consts
            if type(const) is CodeType and const.co_name.isidentifier()]


def make_non_dumpable():
    """prctl(PR_SET_DUMPABLE, 0): the candidate (same uid) may no longer ptrace us or open /proc/<us>/..."""
    libc = _ctypes.dlopen(None)
    if _ctypes.call_function(_ctypes.dlsym(libc, "prctl"), (PR_SET_DUMPABLE, 0, 0, 0, 0)) != 0:
        raise OSError("prctl(PR_SET_DUMPABLE) failed")


def main():
    solution_path, tests_path, entry_point = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(solution_path) as handle:
        solution_source = handle.read()
    with open(tests_path) as handle:
        tests_source = handle.read()
    try:
        solution_code = compile(solution_source, "solution.py", "exec")
    except (SyntaxError, ValueError) as error:
        print(f"FAIL syntax error: {error}", flush=True)
        return
    names = top_level_functions(solution_code)
    if entry_point not in names:
        print(f"FAIL the solution defines no function {entry_point!r}", flush=True)
        return
    make_non_dumpable()
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(0)  # the sentinel will arrive there; the candidate never reads it
        os.dup2(2, 1)  # candidate prints go to stderr, never to the verdict channel
        os.close(request_write)
        os.close(reply_read)
        try:
            serve_candidate(solution_code, request_read, reply_write)
        except BaseException as error:
            os.write(2, f"candidate failed to load: {type(error).__name__}: {error}\n".encode()[:2000])
        os._exit(0)
    os.close(request_read)
    os.close(reply_write)
    sentinel = sys.stdin.readline().strip()
    replies = os.fdopen(reply_read, "rb")
    namespace = {"__name__": "__tests__", "__builtins__": builtins, "math": math}
    for name in names:
        namespace[name] = CandidateProxy(name, request_write, replies)
    try:
        exec(compile(tests_source, "tests.py", "exec"), namespace)
        check = namespace.get("check")
        if not callable(check):
            print("FAIL the test code defines no check(candidate)", flush=True)
            return
        check(namespace[entry_point])
    except AssertionError as error:
        print(f"FAIL assertion failed {str(error)[:200]}".rstrip(), flush=True)
        return
    except BaseException as error:
        print(f"FAIL {type(error).__name__}: {str(error)[:200]}", flush=True)
        return
    finally:
        try:
            os.kill(child, SIGKILL)
            os.waitpid(child, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    print(f"{sentinel} PASS", flush=True)


if __name__ == "__main__":
    main()
