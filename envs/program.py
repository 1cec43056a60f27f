"""Stdin/stdout problems solved in any language of the sandbox's table, judged on hidden tests.

``ProgramFamily(language=...)`` poses the problems of envs/program_problems.py (20, each with a reference in every
language); the same seed and difficulty give the same problem and tests in every language, only the prompt's
language and the reference differ. A completion passes when it builds (the language row's compile, if any) and, on
every test input, exits normally with output equal to the expected one (trailing whitespace on lines and trailing
blank lines ignored). The expected outputs never enter a sandbox: every test input runs the build in a fresh
sandbox holding only its artefacts and that input on stdin, and the output is compared here. The multi-turn
variant answers a failed attempt with the compiler errors or the first failing test (with the program's stderr,
so interpreted languages' syntax errors show); the last, largest test is never revealed.

The C env (envs/c_program.py) is this family over its own ten problems with its original prompt and limits.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from verifarm.envs.base import Task, Verdict, as_valid_utf8, check_completion_size
from verifarm.envs.code_completion import last_fenced_block, sandbox_failure
from verifarm.envs.program_problem import ProgramProblem
from verifarm.envs.program_problems import PROBLEMS
from verifarm.sandbox.compile_run import Build, build, run_build
from verifarm.sandbox.languages import get_language
from verifarm.sandbox.program import ExecResult, Limits, Status

FEEDBACK_SOURCE_CHARS = 3000
FEEDBACK_STDERR_CHARS = 600
HARNESS_GUARANTEES = (
    "expected outputs in sandbox: never (compared outside); one fresh sandbox per test input; "
    "verdict: exit status and output only"
)
# How a prompt names each language's dialect; the table's row names the toolchain.
DIALECTS = {
    "python": "Python 3",
    "c": "C (C11)",
    "cpp": "C++ (C++17)",
    "go": "Go (package main)",
    "rust": "Rust (2021 edition)",
    "javascript": "JavaScript (Node.js, CommonJS)",
    "java": "Java 17 (a public class named Main)",
}


def normalize_output(text: str) -> list[str]:
    """Lines without trailing whitespace and without trailing blank lines: how outputs are compared."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def extract_source(completion: str) -> str:
    """The last fenced block, or the whole completion when it has none."""
    block = last_fenced_block(completion)
    return completion if block is None else block


def _seconds(results: Sequence[ExecResult]) -> float:
    return sum(result.wall_seconds for result in results)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


class ProgramFamily:
    """Stdin/stdout tasks in one language; ``multi_turn`` turns on feedback for up to ``max_turns`` attempts."""

    min_difficulty = 1
    max_difficulty = 5
    max_completion_chars = 8192
    seed_prefix = "program"  # the same for every language: a seed names one problem in all of them
    show_stderr = True  # in feedback on runtime errors
    problems: Sequence[ProgramProblem] = PROBLEMS

    def __init__(
        self,
        language: str = "python",
        multi_turn: bool = False,
        max_turns: int = 3,
        backend: str = "auto",
        compile_limits: Limits | None = None,
        run_limits: Limits | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}")
        row = get_language(language)
        # The language row's limits, unless an env declares its own (the C env keeps its original ones).
        self.language = row.with_limits(compile_limits, run_limits)
        self.name = f"program_{row.name}" + ("_multi_turn" if multi_turn else "")
        self.verifier_version = "program-1"
        self.max_turns = max_turns if multi_turn else 1
        self.backend = backend
        self.max_prompt_chars = 2048 + (FEEDBACK_SOURCE_CHARS + FEEDBACK_STDERR_CHARS + 2500 if multi_turn else 0)

    def intro(self) -> str:
        return (
            f"Write a complete {DIALECTS[self.language.name]} program (standard library only) that reads "
            "standard input and writes standard output."
        )

    def task_id(self, problem_name: str, seed: int, difficulty: int) -> str:
        return f"program[{problem_name}]:d{difficulty}:s{seed}"

    def generate(self, seed: int, difficulty: int) -> Task:
        if not self.min_difficulty <= difficulty <= self.max_difficulty:
            raise ValueError(f"difficulty must lie in [{self.min_difficulty}, {self.max_difficulty}], got {difficulty}")
        rng = random.Random(f"{self.seed_prefix}:{seed}:{difficulty}")
        problem = rng.choice(self.problems)
        size = min(1000, 4**difficulty)  # statements promise at most 1000 queries
        inputs = [problem.make_input(rng, rng.randint(1, size)) for _ in range(2 + difficulty)]
        inputs.append(problem.make_input(rng, size))
        outputs = [problem.solve(text) for text in inputs]
        example_input = problem.make_input(rng, 3)
        example_output = problem.solve(example_input)
        fence = self.language.fence
        prompt = (
            f"{self.intro()}\n\n{problem.statement}\n\nExample input:\n{example_input}Example output:\n"
            f"{example_output}\nReason first if you like, then give the whole program in a ```{fence} code "
            "block.\n"
        )
        return Task(
            task_id=self.task_id(problem.name, seed, difficulty),
            prompt=prompt,
            reference=f"```{fence}\n{problem.references[self.language.name]}```\n",
            difficulty=difficulty,
            data=self.task_data(problem.name, inputs, outputs),
        )

    def task_data(self, problem_name: str, inputs: list[str], outputs: list[str]) -> dict:
        return {"problem": problem_name, "language": self.language.name, "inputs": inputs, "outputs": outputs}

    def verify(self, task: Task, completion: str) -> Verdict:
        return self.judge(task, completion)[0]

    def judge(self, task: Task, completion: str) -> tuple[Verdict, Build | None]:
        """The verdict, and the build when it passed (so a caller can run the same build on more inputs)."""
        too_big = check_completion_size(completion, self.max_completion_chars * 4)
        if too_big is not None:
            return too_big, None
        details: dict = {
            "verifier_version": self.verifier_version,
            "sandbox_backend": "none",
            "harness": HARNESS_GUARANTEES,
        }
        if "language" in task.data:
            details["language"] = self.language.name
        source = as_valid_utf8(extract_source(completion))
        if not source.strip():
            return Verdict(
                0.0,
                False,
                "empty program",
                {**details, "feedback": "The program was empty.", "harness_reason": "not run: empty program"},
            ), None
        inputs, outputs = task.data["inputs"], task.data["outputs"]
        results: list[ExecResult] = []
        try:
            built = build(self.language, source, self.backend)
            compiled = built.compile
            if compiled is not None:
                details["sandbox_backend"] = compiled.backend
                if compiled.status is Status.INFRA_ERROR:
                    return self._infra(compiled, [compiled], details), None
                if not built.ok:
                    errors = compiled.stderr.decode("utf-8", "replace")
                    reason = (
                        "compilation timed out"
                        if compiled.status is Status.TIMEOUT
                        else "compilation failed"
                        if compiled.status is not Status.OK
                        else "the compiler produced no binary"
                    )
                    details["feedback"] = f"It did not compile ({reason}):\n{_clip(errors, 1500)}"
                    details["harness_reason"] = reason
                    return Verdict(
                        0.0,
                        False,
                        reason,
                        details,
                        sandbox_seconds=compiled.wall_seconds,
                        compile_seconds=built.compile_seconds,
                    ), None
                results.append(compiled)
            details["tests_total"] = len(inputs)
            # One input at a time, stopping at the first failure: most attempts fail, and an endless loop
            # should cost one run's CPU limit, not one per input.
            for index, (text, expected) in enumerate(zip(inputs, outputs)):
                run = run_build(built, text.encode(), self.backend)
                details["sandbox_backend"] = run.backend
                results.append(run)
                if run.status is Status.INFRA_ERROR:
                    return self._infra(run, results, details), None
                problem = self._run_problem(run, expected)
                if problem is not None:
                    details["tests_passed"] = index
                    details["harness_reason"] = f"test {index + 1}/{len(inputs)}: {problem}"
                    details["feedback"] = self._test_feedback(index, inputs, text, expected, run, problem)
                    return Verdict(
                        0.0,
                        False,
                        f"test {index + 1}/{len(inputs)}: {problem}",
                        details,
                        sandbox_seconds=_seconds(results),
                        compile_seconds=built.compile_seconds,
                    ), None
        except Exception as error:
            return sandbox_failure(error, details, self.backend), None
        details["tests_passed"] = len(inputs)
        details["harness_reason"] = f"all {len(inputs)} tests passed"
        return Verdict(
            1.0,
            True,
            f"all {len(inputs)} tests passed",
            details,
            sandbox_seconds=_seconds(results),
            compile_seconds=built.compile_seconds,
        ), built

    def _test_feedback(
        self, index: int, inputs: list[str], text: str, expected: str, run: ExecResult, problem: str
    ) -> str:
        if index == len(inputs) - 1:
            # The last (largest) test is never shown, so no number of turns lets a policy pass by hard-coding the
            # outputs that earlier feedback revealed.
            return f"It failed the final hidden test ({index + 1} of {len(inputs)}): {problem}."
        got = run.stdout.decode("utf-8", "replace")
        feedback = (
            f"It failed test {index + 1} of {len(inputs)}: {problem}.\n"
            f"Input:\n{_clip(text, 400)}\nExpected output:\n{_clip(expected, 300)}\n"
            f"Your output:\n{_clip(got, 300)}"
        )
        if self.show_stderr and run.status is not Status.OK and run.stderr:
            feedback += f"\nError output:\n{_clip(run.stderr.decode('utf-8', 'replace'), FEEDBACK_STDERR_CHARS)}"
        return feedback

    @staticmethod
    def _infra(result: ExecResult, results: list[ExecResult], details: dict | None = None) -> Verdict:
        return Verdict(
            0.0,
            False,
            f"sandbox infrastructure error: {result.detail[:200]}",
            details or {},
            infra_error=True,
            sandbox_seconds=_seconds(results),
        )

    @staticmethod
    def _run_problem(run: ExecResult, expected: str) -> str | None:
        if run.status is Status.TIMEOUT:
            return "time limit exceeded"
        if run.status is Status.MEMORY_LIMIT:
            return "memory limit exceeded"
        if run.status is Status.OUTPUT_LIMIT:
            return "output limit exceeded"
        if run.status is not Status.OK:
            code = f"exit code {run.exit_code}" if run.signal is None else f"signal {run.signal}"
            return f"runtime error ({run.status.value}, {code})"
        if normalize_output(run.stdout.decode("utf-8", "replace")) != normalize_output(expected):
            return "wrong output"
        return None

    def feedback(self, task: Task, completion: str, verdict: Verdict, turn: int, max_turns: int) -> str:
        """The next observation after a failed attempt: the task, the attempt, and what went wrong."""
        source = _clip(extract_source(completion), FEEDBACK_SOURCE_CHARS)
        what = verdict.details.get("feedback", verdict.reason)
        fence = self.language.fence
        return (
            f"{task.prompt}\nYour previous program (attempt {turn} of {max_turns}):\n```{fence}\n{source}\n```\n"
            f"{what}\nFix the program and give the complete corrected program in a ```{fence} code block.\n"
        )
