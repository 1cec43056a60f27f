"""Program-v0 in every language of the sandbox's table: all 140 references pass, wrong programs fail with feedback
that names what went wrong, and one seed poses the same problem in every language."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import pytest

import verifarm.envs  # noqa: F401  (registers the ids)
from verifarm.envs.catalog import accepted_languages, get_family
from verifarm.envs.program import ProgramFamily
from verifarm.envs.program_problems import PROBLEMS
from verifarm.sandbox.languages import LANGUAGE_NAMES


def _one_task_per_problem(family: ProgramFamily, difficulty: int = 1) -> dict:
    tasks: dict = {}
    for seed in range(400):
        task = family.generate(seed, difficulty)
        tasks.setdefault(task.data["problem"], task)
        if len(tasks) == len(PROBLEMS):
            return tasks
    raise AssertionError(f"seeds 0-399 reach only {sorted(tasks)}")


def test_twenty_problems_each_with_a_reference_in_all_seven_languages() -> None:
    assert len(PROBLEMS) >= 20 and len(LANGUAGE_NAMES) == 7
    assert all(set(problem.references) == set(LANGUAGE_NAMES) for problem in PROBLEMS)


@pytest.mark.slow
@pytest.mark.parametrize("language", LANGUAGE_NAMES)
def test_every_reference_scores_one(language: str) -> None:
    family = ProgramFamily(language=language)
    tasks = _one_task_per_problem(family, difficulty=2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = list(pool.map(lambda task: family.verify(task, task.reference), tasks.values()))
    for task, verdict in zip(tasks.values(), verdicts):
        assert verdict.passed and verdict.reward == 1.0, (task.task_id, verdict.reason, verdict.details.get("feedback"))
        assert verdict.details["language"] == language


def test_a_seed_poses_the_same_problem_and_tests_in_every_language() -> None:
    tasks = [ProgramFamily(language=language).generate(7, 3) for language in LANGUAGE_NAMES]
    assert len({task.task_id for task in tasks}) == 1
    assert all(task.data["inputs"] == tasks[0].data["inputs"] for task in tasks)
    assert all(task.data["outputs"] == tasks[0].data["outputs"] for task in tasks)
    assert len({task.prompt for task in tasks}) == len(LANGUAGE_NAMES)  # each asks for its own language
    assert "```rust" in ProgramFamily(language="rust").generate(7, 3).prompt


WRONG = {
    "python": ("print(", "runtime error", "SyntaxError"),
    "javascript": ("console.log(", "runtime error", "SyntaxError"),
    "cpp": ("int main() { return x; }", "compilation failed", "error"),
    "go": ("package main\nfunc main() { x := 1 }\n", "compilation failed", "declared"),
    "rust": ('fn main() { let x: i32 = "no"; }', "compilation failed", "mismatched types"),
    "java": (
        'public class Main { public static void main(String[] a) { int x = "no"; } }',
        "compilation failed",
        "incompatible types",
    ),
}


@pytest.mark.parametrize("language", sorted(WRONG))
def test_broken_programs_fail_with_feedback_that_names_the_error(language: str) -> None:
    family = ProgramFamily(language=language, multi_turn=True)
    task = family.generate(1, 1)
    source, reason, shown = WRONG[language]
    verdict = family.verify(task, f"```{language}\n{source}\n```")
    assert not verdict.passed and not verdict.infra_error and reason in verdict.reason, verdict
    assert shown in verdict.details["feedback"], verdict.details["feedback"]
    observation = family.feedback(task, source, verdict, 1, 3)
    assert shown in observation and observation.startswith(task.prompt)


def test_wrong_output_and_endless_loops_fail() -> None:
    family = ProgramFamily(language="javascript")
    task = family.generate(2, 1)
    wrong = family.verify(task, "```js\nconsole.log('42');\n```")
    assert not wrong.passed and wrong.reason.endswith("wrong output")
    endless = family.verify(task, "```js\nfor (;;) {}\n```")
    assert not endless.passed and endless.reason.endswith("time limit exceeded")


def test_multi_turn_episode_recovers_after_a_compile_error() -> None:
    env = gym.make("verifarm/ProgramMultiTurn-v0", language="go")
    env.reset(seed=4, options={"difficulty": 1})
    task = env.unwrapped.task
    observation, reward, terminated, _, _ = env.step("```go\npackage main\nfunc main() { oops }\n```")
    assert reward == 0.0 and not terminated and "did not compile" in observation
    _, reward, terminated, _, _ = env.step(task.reference)
    assert reward == 1.0 and terminated


def test_bad_language_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown language 'cobol'"):
        get_family("verifarm/Program-v0", language="cobol")
    assert accepted_languages("verifarm/Program-v0") == LANGUAGE_NAMES
    assert accepted_languages("verifarm/CProgram-v0") == ("c",)
    assert accepted_languages("verifarm/Arithmetic-v0") == ()


def test_envs_list_names_the_languages_each_env_accepts() -> None:
    from typer.testing import CliRunner

    from verifarm.cli import app

    result = CliRunner().invoke(app, ["envs", "list"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("verifarm/")}
    assert lines["verifarm/Program-v0"].endswith("languages " + ",".join(LANGUAGE_NAMES))
    assert lines["verifarm/CProgram-v0"].endswith("languages c")
    assert lines["verifarm/Addition-v0"].endswith("languages -")
