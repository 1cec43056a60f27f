"""ReasoningGym adapter: the datasets' own answers score 1.0 through the adapter and the env; wrong ones do not."""

import json

import pytest

import verifarm.envs  # noqa: F401  (registers the ids)
from verifarm.envs.reasoning_gym_adapter import ReasoningGymFamily
from verifarm.envs.scoring_process import ScoringProcess

DATASETS = [
    "basic_arithmetic",
    "chain_sum",
    "leg_counting",
    "spell_backward",
    "letter_counting",
    "number_sorting",
    "gcd",
    "lcm",
    "base_conversion",
    "fraction_simplification",
    "word_sorting",
    "caesar_cipher",
    "simple_equations",
    "prime_factorization",
    "count_bits",
    "mini_sudoku",
    "maze",
    "gsm_symbolic",
]


@pytest.mark.parametrize("dataset", DATASETS)
def test_dataset_answers_score_one(dataset: str) -> None:
    family = ReasoningGymFamily(dataset)
    for difficulty in (1, 3, 5):
        for seed in range(8):
            task = family.generate(seed, difficulty)
            verdict = family.verify(task, f"Some reasoning first.\n{task.reference}")
            assert verdict.reward == 1.0 and verdict.passed, (task.task_id, task.data["entry"]["answer"], verdict)


@pytest.mark.parametrize("dataset", ["basic_arithmetic", "number_sorting", "maze"])
def test_other_answers_are_scored_by_the_dataset_in_the_child(dataset: str) -> None:
    family = ReasoningGymFamily(dataset)
    try:
        task = family.generate(1, 2)
        wrong = family.verify(task, "<answer>certainly not this 918273645</answer>")
        assert wrong.reward < 1.0 and not wrong.passed and not wrong.infra_error, wrong
        spaced = family.verify(task, f"<answer>  {task.data['entry']['answer']}\n</answer>")  # stripped, not identical
        assert spaced.passed, spaced
    finally:
        family.close()


def test_scorers_that_eval_answers_cannot_act_or_hang(tmp_path) -> None:
    family = ReasoningGymFamily("spiral_matrix", score_timeout_seconds=3)
    try:
        task = family.generate(0, 1)
        marker = tmp_path / "pwned"
        attack = (
            f"[__import__('os').system('touch {marker}'), open('{marker}', 'w').write('x'), "
            f"__import__('shutil').rmtree('{tmp_path}')]"
        )
        verdict = family.verify(task, f"<answer>{attack}</answer>")
        assert verdict.reward == 0.0 and not verdict.infra_error, verdict
        assert tmp_path.exists() and not marker.exists()
        warm_pid = family._scorer._process.pid
        hang = family.verify(task, "<answer>[9**9**9**9]</answer>")
        assert hang.reward == 0.0 and "timed out" in hang.reason and not hang.infra_error, hang
        assert family.verify(task, task.reference).passed
        assert family.verify(task, "<answer>[1, 2]</answer>").reward == 0.0
        assert family._scorer._process.pid == warm_pid  # the deadline killed the fork; the warm child serves on
    finally:
        family.close()


SPIRAL = "__import__('sys').modules['reasoning_gym.algorithmic.spiral_matrix'].SpiralMatrixDataset"
# Answers that, scored in a long-lived child, make every later answer score 1.0 (each dataset's scorer runs them:
# spiral_matrix through eval, the other two through sympy's parse_expr).
POISONS = {
    "spiral_matrix": [
        f"[setattr({SPIRAL}, 'score_answer', lambda self, answer, entry: 1.0)]",  # the scorer
        "[setattr(__import__('builtins'), 'float', lambda *a: 1.0)]",  # a builtin
        "[__import__('builtins').__dict__.update(eval=lambda *a: __import__('json').loads("
        "'[' + __import__('sys')._getframe(1).f_locals['entry']['answer'].replace(' ', ',') + ']'))]",
    ],
    "simple_integration": ["setattr(__import__('sympy'), 'simplify', __import__('sympy').S.Zero.__mul__)"],  # a global
    "polynomial_multiplication": ["setattr(__import__('sympy'), 'parse_expr', __import__('sympy').S.Zero.__mul__)"],
}
LATER_WRONG = {
    "spiral_matrix": ["1 2 3", "[0]", "nonsense"],
    "simple_integration": ["x + 12345", "X**2"],
    "polynomial_multiplication": ["x + 12345", "7"],
}
# The right answer written differently from the oracle's string, so the child scores it (not the oracle shortcut),
# and its score: spiral_matrix gives a right matrix as a Python list 0.1 (1.0 only to the exact string).
RESTATED = {
    "spiral_matrix": (lambda answer: "[" + ", ".join(answer.split()) + "]", 0.1),
    "simple_integration": (lambda answer: f"({answer})", 1.0),
    "polynomial_multiplication": (lambda answer: f"({answer})", 1.0),
}


@pytest.mark.parametrize("dataset", sorted(POISONS))
def test_the_poisons_work_on_a_child_that_scores_without_forks(dataset: str) -> None:
    """The control: without a fork per answer, the first poison makes a later wrong answer pass."""
    task = ReasoningGymFamily(dataset).generate(0, 1)
    child = ScoringProcess("verifarm.envs.reasoning_gym_adapter:score_handler", {"dataset": dataset})
    try:
        request = {"difficulty": 1, "entry": task.data["entry"]}
        assert child.call({**request, "answer": LATER_WRONG[dataset][0]}, 30).body == {"score": 0.0}
        child.call({**request, "answer": POISONS[dataset][0]}, 30)
        assert child.call({**request, "answer": LATER_WRONG[dataset][0]}, 30).body == {"score": 1.0}
    finally:
        child.close()


@pytest.mark.parametrize("dataset", sorted(POISONS))
def test_an_answer_cannot_change_the_verdict_of_a_later_answer(dataset: str) -> None:
    family = ReasoningGymFamily(dataset, score_timeout_seconds=30)
    try:
        tasks = [family.generate(0, 1), family.generate(5, 3)]
        for poison in POISONS[dataset]:
            poisoned = family.verify(tasks[0], f"<answer>{poison}</answer>")
            assert poisoned.details["scored_in_fork"] and not poisoned.infra_error, poisoned
            warm_pid = family._scorer._process.pid
            for task in tasks:
                for wrong in LATER_WRONG[dataset]:
                    verdict = family.verify(task, f"<answer>{wrong}</answer>")
                    assert verdict.reward < 1.0 and not verdict.passed and not verdict.infra_error, (poison, verdict)
                restate, score = RESTATED[dataset]
                right = family.verify(task, f"<answer>{restate(task.data['entry']['answer'])}</answer>")
                assert right.reward == score and right.details["scored_in_fork"], (poison, right)
                assert family.verify(task, task.reference).passed
            assert family._scorer._process.pid == warm_pid  # one warm child served them all: no restarts
    finally:
        family.close()


def test_a_crash_in_the_fork_is_an_infra_error_not_a_verdict() -> None:
    family = ReasoningGymFamily("spiral_matrix", score_timeout_seconds=3)
    try:
        task = family.generate(0, 1)
        for crash in ("[__import__('os').kill(__import__('os').getpid(), 9)]", "[__import__('os')._exit(0)]"):
            verdict = family.verify(task, f"<answer>{crash}</answer>")
            assert verdict.infra_error and verdict.reward == 0.0 and "died without a reply" in verdict.reason, verdict
        stopped = family.verify(task, "<answer>[__import__('os').kill(__import__('os').getpid(), 19)]</answer>")
        assert stopped.infra_error and "stopped by a signal" in stopped.reason, stopped
        assert family.verify(task, f"<answer>{task.data['entry']['answer']}\n</answer>").passed
    finally:
        family.close()


def test_only_scorers_that_run_answers_fork_per_answer() -> None:
    assert ReasoningGymFamily("spiral_matrix").scorer_runs_answers
    assert ReasoningGymFamily("basic_arithmetic").scorer_runs_answers
    assert not ReasoningGymFamily("maze").scorer_runs_answers
    assert not ReasoningGymFamily("spell_backward").scorer_runs_answers
    family = ReasoningGymFamily("maze")
    try:
        verdict = family.verify(family.generate(0, 1), "<answer>12345</answer>")
        assert not verdict.passed and not verdict.details["scored_in_fork"], verdict
    finally:
        family.close()


def test_boxnet_scores_plans_in_its_child() -> None:
    """boxnet has no oracle answer and its scorer raises on JSON that is not a list of plans: the child starts
    anyway, a plan that matches every box scores 1.0, a wrong one less, a malformed one is rejected."""
    family = ReasoningGymFamily("boxnet")
    try:
        task = next(
            family.generate(seed, 1)
            for seed in range(200)
            if _matching_plan(family.generate(seed, 1).data["entry"]) is not None
        )
        plans = _matching_plan(task.data["entry"])
        right = family.verify(task, f"<answer>{json.dumps(plans)}</answer>")
        assert right.reward == 1.0 and right.passed and not right.infra_error, right
        empty = family.verify(task, f"<answer>{json.dumps(plans[:-1])}</answer>")  # its last step left out
        assert empty.reward < 1.0 and not empty.passed and not empty.infra_error, empty
        malformed = family.verify(task, "<answer>0</answer>")
        assert not malformed.passed and not malformed.infra_error and "rejected" in malformed.reason, malformed
    finally:
        family.close()


def _matching_plan(entry: dict) -> list[dict] | None:
    """Plans that match every box with a target of its colour in its own square, one box per agent and step (None
    when some box has no such target)."""
    steps: list[dict] = []
    for square, items in entry["metadata"]["initial_state"].items():
        boxes = [item for item in items if item.startswith("box_")]
        if any(boxes.count(box) > items.count(f"target_{box[4:]}") for box in boxes):
            return None
        x, y = square.split("_")
        for step, box in enumerate(boxes):
            if step == len(steps):
                steps.append({})
            steps[step][f"Agent[{x}, {y}]"] = f"move({box}, target_{box[4:]})"
    return steps or None
