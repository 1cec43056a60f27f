"""Turning a code completion into a program, and a sandbox test outcome into a verdict (shared by the code envs).

A completion is either the body that continues the prompt's code (HumanEval style) or, after any chain of thought,
a fenced code block; the last fenced block wins. Python is checked with ``verifarm.sandbox.harness.check_python``,
whose pass verdict the candidate cannot forge, whose tests the candidate can never read, and which takes only the
entry point from the candidate: the task's prompt is the trusted code the tests' other names come from. A sandbox
infrastructure failure is an ``infra_error`` verdict, never a plain fail. Every sandboxed verdict records the
harness's own reason (``details["harness_reason"]``) so a verdict can be traced to what the harness saw.
"""

from __future__ import annotations

import ast
import re
import textwrap

from verifarm.envs.base import Task, Verdict, as_valid_utf8, check_completion_size
from verifarm.sandbox.harness import GUARANTEES, check_python
from verifarm.sandbox.selection import default_backend_name

# Comment lines, so that a prompt ending in a signature and docstring plus a body is still the whole program.
PYTHON_INSTRUCTION = (
    "# Complete the function below. Reply with its body (indented, continuing this code), or reason\n"
    "# first and then give the whole function in a ```python code block.\n\n"
)
FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#-]*)[ \t]*\r?\n(.*?)(?:```|\Z)", re.DOTALL)


def last_fenced_block(completion: str) -> str | None:
    """The code of the last fenced block (an unclosed final fence runs to the end), or None without one."""
    blocks = FENCE.findall(completion)
    return blocks[-1][1] if blocks else None


def defines_function(source: str, name: str) -> bool:
    """Whether ``source`` parses and defines ``name`` at the top level."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name for node in tree.body)


def assemble_python(code_prompt: str, completion: str, entry_point: str) -> str:
    """The module to test: the prompt's code followed by the completion's body or its own definition.

    The prompt ends with a signature and docstring, which already make a complete function, so a whole redefinition
    appended after it simply replaces it while helpers defined in the prompt stay available.
    """
    code = last_fenced_block(completion)
    if code is None:
        return code_prompt + completion
    if defines_function(code, entry_point):
        return code_prompt.rstrip("\n") + "\n\n\n" + code
    body = code if code.startswith((" ", "\t")) else textwrap.indent(code, "    ")
    return code_prompt + body


def syntax_problem(source: str) -> str | None:
    """A short reason when ``source`` is not valid Python, else None (parsed here: nothing runs)."""
    try:
        ast.parse(source)
    except SyntaxError as error:
        return f"syntax error: {error.msg} (line {error.lineno})"
    except (ValueError, RecursionError, MemoryError) as error:
        return f"unparsable source: {type(error).__name__}: {str(error)[:100]}"
    return None


def sandbox_failure(error: Exception, details: dict, backend: str) -> Verdict:
    """The verdict when the sandbox itself raised (backend unavailable, daemon gone): an infrastructure error."""
    try:
        name = default_backend_name() if backend == "auto" else backend
    except Exception:
        name = backend
    details = {**details, "sandbox_backend": name}
    return Verdict(
        0.0,
        False,
        f"sandbox infrastructure error: {type(error).__name__}: {str(error)[:200]}",
        details,
        infra_error=True,
    )


def verify_python(
    solution: str,
    test_code: str,
    entry_point: str,
    verifier_version: str,
    backend: str = "auto",
    prompt: str = "",
) -> Verdict:
    """Run HumanEval-style ``check(candidate)`` tests against ``solution`` in the sandbox under the harness's limits;
    ``prompt`` is the task's trusted code, whose names (helpers) the tests use instead of the solution's."""
    details: dict = {"verifier_version": verifier_version, "sandbox_backend": "none"}
    problem = syntax_problem(solution)
    if problem is not None:
        return Verdict(0.0, False, problem, {**details, "harness_reason": f"not run: {problem}"})
    try:
        outcome = check_python(
            as_valid_utf8(solution),
            test_code,
            entry_point,
            backend=backend,
            prompt=as_valid_utf8(prompt),
        )
    except Exception as error:
        return sandbox_failure(error, details, backend)
    details.update(
        sandbox_backend=outcome.result.backend,
        sandbox_status=outcome.result.status.value,
        harness=GUARANTEES,
        harness_reason=outcome.reason[:300],
    )
    sandbox_seconds = outcome.result.wall_seconds
    if outcome.infra_error:
        return Verdict(0.0, False, outcome.reason[:300], details, infra_error=True, sandbox_seconds=sandbox_seconds)
    if outcome.passed:
        return Verdict(1.0, True, "all tests passed", details, sandbox_seconds=sandbox_seconds)
    if outcome.result.stderr:
        details["stderr_tail"] = outcome.result.stderr[-300:].decode("utf-8", "replace")
    return Verdict(0.0, False, f"tests failed: {outcome.reason[:300]}", details, sandbox_seconds=sandbox_seconds)


def verify_python_task(
    task: Task,
    completion: str,
    verifier_version: str,
    max_completion_chars: int,
    backend: str = "auto",
) -> Verdict:
    """Score a completion (function body or fenced block) of a Python function task: the prompt's signature
    plus the completion, run against the task's ``check(candidate)`` tests in the sandbox."""
    too_big = check_completion_size(completion, max_completion_chars * 4)
    if too_big is not None:
        return too_big
    if not completion.strip():
        return Verdict(
            0.0, False, "empty completion", {"verifier_version": verifier_version, "sandbox_backend": "none"}
        )
    entry_point = task.data["entry_point"]
    solution = assemble_python(task.prompt, completion, entry_point)
    return verify_python(
        solution,
        task.data["test_code"],
        entry_point,
        verifier_version,
        backend=backend,
        prompt=task.prompt,
    )
