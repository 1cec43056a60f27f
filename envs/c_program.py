"""Stdin/stdout problems solved in C: compiled with gcc and judged on several test inputs in the sandbox.

Each problem template has a statement, an input generator, a Python reference that computes the expected output
here in the trusted parent, and a reference C program (the task's reference completion). A completion passes when
it compiles and, on every test input, exits normally with output equal to the expected one (trailing whitespace on
lines and trailing blank lines ignored). The expected outputs never enter a sandbox: every test input runs the binary
in a fresh sandbox holding only the binary and that input on stdin, and the output is compared here, so a program
can neither read an expected output nor carry anything from one test to the next; a verdict records this
(``details["harness"]``) and the judge's own reason (``details["harness_reason"]``). The multi-turn variant answers a failed attempt with the compiler errors or
the first failing test as the next observation; the last, largest test is never revealed, so outputs learned from
feedback cannot be hard-coded into a pass. The judging is envs/program.py's ProgramFamily (the C row of the
language table) over the problems of envs/c_problems.py, with this env's own prompt, limits and task ids.
"""

from __future__ import annotations

import dataclasses

from verifarm.envs.c_problems import PROBLEMS
from verifarm.envs.program import FEEDBACK_SOURCE_CHARS, ProgramFamily
from verifarm.sandbox.languages import C_COMPILE_LIMITS
from verifarm.sandbox.program import Limits

# This env's limits, declared here once: they predate the language table's C row and stay what verifier version
# c-program-1 judged under. gcc needs the sandbox's generous compile memory; 5 CPU seconds is far above what these
# programs take.
COMPILE_LIMITS = dataclasses.replace(C_COMPILE_LIMITS, cpu_seconds=5, wall_seconds=20)
RUN_LIMITS = Limits(
    cpu_seconds=1,
    wall_seconds=10,
    memory_bytes=128 * 1024 * 1024,
    max_processes=16,
    output_bytes=256 * 1024,
    file_size_bytes=1024 * 1024,
    open_files=32,
)


class CProgramFamily(ProgramFamily):
    """C stdin/stdout tasks; ``multi_turn`` turns on feedback for up to ``max_turns`` attempts."""

    seed_prefix = "c_program"
    show_stderr = False
    problems = PROBLEMS

    def __init__(self, multi_turn: bool = False, max_turns: int = 3, backend: str = "auto") -> None:
        super().__init__("c", multi_turn, max_turns, backend, COMPILE_LIMITS, RUN_LIMITS)
        self.name = "c_program_multi_turn" if multi_turn else "c_program"
        self.verifier_version = "c-program-1"
        # Room for the prompt, the previous program and the feedback in a multi-turn observation.
        self.max_prompt_chars = 2048 + (FEEDBACK_SOURCE_CHARS + 2500 if multi_turn else 0)

    def intro(self) -> str:
        return (
            "Write a complete C program (C11, standard library only) that reads standard input and writes "
            "standard output."
        )

    def task_id(self, problem_name: str, seed: int, difficulty: int) -> str:
        return f"c_program[{problem_name}]:d{difficulty}:s{seed}"

    def task_data(self, problem_name: str, inputs: list[str], outputs: list[str]) -> dict:
        return {"problem": problem_name, "inputs": inputs, "outputs": outputs}
