"""In-sandbox test driver for check_python; shipped as a file into the run, standard library only.

Two processes: this trusted driver runs the tests, a forked child runs the candidate. Every call to a
candidate function crosses a pipe as tagged JSON of plain data and is rebuilt here from builtins, so the
candidate can forge neither a value (`__eq__`), nor the test code, nor the verdict. The driver is made
non-dumpable before forking, so the child cannot read its memory or file descriptors through /proc or
ptrace. The sentinel arrives on stdin only after the fork and is printed only after every test ran.
Usage: python3 -I -S driver.py SOLUTION_FILE TESTS_FILE ENTRY_POINT   (sentinel line on stdin)
"""

import ast
import builtins
import ctypes
import json
import math
import os
import signal
import sys

PR_SET_DUMPABLE = 4
MAX_DEPTH = 64


class CandidateError(Exception):
    """The candidate raised, died, or returned something that is not plain data."""


def to_wire(value, depth=0):
    if depth > MAX_DEPTH:
        raise CandidateError("value nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value if kind is not str else {"s": value}
    if kind is int:
        return {"i": str(value)}
    if kind is float:
        return {"f": repr(value)}
    if kind is complex:
        return {"c": [repr(value.real), repr(value.imag)]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind in (list, tuple, set, frozenset):
        tag = {list: "l", tuple: "t", set: "S", frozenset: "F"}[kind]
        return {tag: [to_wire(item, depth + 1) for item in value]}
    if kind is dict:
        return {"d": [[to_wire(k, depth + 1), to_wire(v, depth + 1)] for k, v in value.items()]}
    raise CandidateError(f"value of type {kind.__name__} is not plain data")


def from_wire(wire, depth=0):
    if depth > MAX_DEPTH:
        raise CandidateError("value nested too deeply")
    if wire is None or type(wire) is bool:
        return wire
    if type(wire) is not dict or len(wire) != 1:
        raise CandidateError("malformed value from candidate")
    (tag, body), = wire.items()
    if tag == "s" and type(body) is str:
        return str(body)
    if tag == "i" and type(body) is str:
        return int(body)
    if tag == "f" and type(body) is str:
        return float(body)
    if tag == "c" and type(body) is list and len(body) == 2:
        return complex(float(body[0]), float(body[1]))
    if tag == "b" and type(body) is str:
        return bytes.fromhex(body)
    if tag in ("l", "t", "S", "F") and type(body) is list:
        items = [from_wire(item, depth + 1) for item in body]
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
    if tag == "d" and type(body) is list:
        return {from_wire(k, depth + 1): from_wire(v, depth + 1) for k, v in (pair for pair in body)}
    raise CandidateError("malformed value from candidate")


def send(fd, message):
    data = json.dumps(message).encode() + b"\n"
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def receive(stream):
    line = stream.readline()
    if not line:
        raise CandidateError("candidate process ended early")
    return json.loads(line)


def serve_candidate(solution_source, request_fd, reply_fd):
    """Child: run the candidate's module, then answer call requests until the pipe closes."""
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    exec(compile(solution_source, "solution.py", "exec"), namespace)
    requests = os.fdopen(request_fd, "rb")
    while True:
        line = requests.readline()
        if not line:
            os._exit(0)
        request = json.loads(line)
        try:
            args = from_wire(request["args"])
            result = namespace[request["name"]](*args)
            reply = {"ok": to_wire(result)}
        except BaseException as error:  # the candidate's exception is data for the driver
            reply = {"raised": type(error).__name__, "message": str(error)[:500]}
        send(reply_fd, reply)


class CandidateProxy:
    """Stands in the driver for a function of the candidate; calls cross the pipe as plain data."""

    def __init__(self, name, request_fd, replies):
        self.name, self.request_fd, self.replies = name, request_fd, replies

    def __call__(self, *args):
        try:
            send(self.request_fd, {"name": self.name, "args": to_wire(list(args))})
        except OSError:
            raise CandidateError("candidate process ended early") from None
        reply = receive(self.replies)
        if type(reply) is dict and "ok" in reply:
            return from_wire(reply["ok"])
        raised = reply.get("raised") if type(reply) is dict else None
        builtin_error = getattr(builtins, str(raised), None)
        message = str(reply.get("message", "")) if type(reply) is dict else ""
        if isinstance(builtin_error, type) and issubclass(builtin_error, Exception):
            raise builtin_error(message)
        raise CandidateError(f"{raised}: {message}")


def top_level_functions(source):
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return None, f"syntax error: {error.msg} (line {error.lineno})"
    return [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))], ""


def main():
    solution_path, tests_path, entry_point = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(solution_path) as handle:
        solution_source = handle.read()
    with open(tests_path) as handle:
        tests_source = handle.read()
    names, problem = top_level_functions(solution_source)
    if names is None:
        print("FAIL " + problem, flush=True)
        return
    if entry_point not in names:
        print(f"FAIL the solution defines no function {entry_point!r}", flush=True)
        return
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(0)  # the sentinel will arrive there; the candidate never reads it
        os.dup2(2, 1)  # candidate prints go to stderr, never to the verdict channel
        os.close(request_write)
        os.close(reply_read)
        try:
            serve_candidate(solution_source, request_read, reply_write)
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
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    print(f"{sentinel} PASS", flush=True)


if __name__ == "__main__":
    main()
