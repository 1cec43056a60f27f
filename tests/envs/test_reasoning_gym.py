"""ReasoningGym adapter: the datasets' own answers score 1.0 through the adapter and the env; wrong ones do not."""

import gymnasium as gym
import pytest

import verifarm.envs  # noqa: F401  (registers the ids)
from verifarm.envs.reasoning_gym_adapter import ReasoningGymFamily, answer_can_run_code

DATASETS = [
    "basic_arithmetic", "chain_sum", "leg_counting", "spell_backward", "letter_counting", "number_sorting", "gcd",
    "lcm", "base_conversion", "fraction_simplification", "word_sorting", "caesar_cipher", "simple_equations",
    "prime_factorization", "count_bits", "mini_sudoku", "maze", "gsm_symbolic",
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
        attack = (f"[__import__('os').system('touch {marker}'), open('{marker}', 'w').write('x'), "
                  f"__import__('shutil').rmtree('{tmp_path}')]")
        verdict = family.verify(task, f"<answer>{attack}</answer>")
        assert verdict.reward == 0.0 and not verdict.infra_error, verdict
        assert tmp_path.exists() and not marker.exists()
        hang = family.verify(task, "<answer>[9**9**9**9]</answer>")
        assert hang.reward == 0.0 and "timed out" in hang.reason, hang
        assert family.verify(task, task.reference).passed  # a fresh child takes over after the kill
        assert family.verify(task, "<answer>[1, 2]</answer>").reward == 0.0
    finally:
        family.close()


def test_an_answer_cannot_rewrite_the_scorer_for_later_answers() -> None:
    """spiral_matrix evals answers: one that replaces the dataset's score_answer must not make later answers pass."""
    family = ReasoningGymFamily("spiral_matrix", score_timeout_seconds=20)
    try:
        task = family.generate(0, 1)
        rewrite = ("[setattr(__import__('sys').modules['reasoning_gym.algorithmic.spiral_matrix'].SpiralMatrixDataset,"
                   " 'score_answer', lambda self, answer, entry: 1.0)]")
        first = family.verify(task, f"<answer>{rewrite}</answer>")
        assert not first.passed and first.details["scorer_child_retired"], first
        for later_task, wrong in ((task, "1 2 3"), (family.generate(5, 3), "nonsense"), (task, "[0]")):
            verdict = family.verify(later_task, f"<answer>{wrong}</answer>")
            assert verdict.reward < 1.0 and not verdict.passed and not verdict.infra_error, (wrong, verdict)
        assert family.verify(task, f"<answer> {task.data['entry']['answer']} </answer>").passed
    finally:
        family.close()


def test_only_scorers_that_run_answers_retire_their_child() -> None:
    assert ReasoningGymFamily("spiral_matrix").scorer_runs_answers
    assert ReasoningGymFamily("basic_arithmetic").scorer_runs_answers
    assert not ReasoningGymFamily("maze").scorer_runs_answers
    assert not ReasoningGymFamily("spell_backward").scorer_runs_answers
    inert = ["42", "-3.5", "1 2 3", "[1, 2], [3]", "(2 + 3) * 4 / 5", "x**2/2 + C", "sqrt(x) + sin(2*x)", "E"]
    assert not any(map(answer_can_run_code, inert))
    able = ["__import__('os')", "\uff45val", "'a'", "getattr(x, y)", "a.b", "x . real", "(x := 1)", "lambda: 0",
            "a and b", "1e5", "exec", "[setattr(x, y, z)]"]
    assert all(map(answer_can_run_code, able))


def test_generation_is_deterministic_and_difficulty_matters() -> None:
    first, second = ReasoningGymFamily("basic_arithmetic"), ReasoningGymFamily("basic_arithmetic")
    assert [first.generate(s, 2) for s in range(10)] == [second.generate(s, 2) for s in range(10)]
    easy = {first.generate(s, 1).prompt for s in range(20)}
    hard = {first.generate(s, 5).prompt for s in range(20)}
    assert len(easy) > 15 and sum(len(p) for p in hard) > sum(len(p) for p in easy)


def test_env_by_dataset_kwarg() -> None:
    env = gym.make("verifarm/ReasoningGym-v0", dataset="gcd", difficulty=2)
    observation, info = env.reset(seed=3)
    assert "GCD" in observation and info["task_id"].startswith("reasoning_gym[gcd]")
    _, reward, terminated, _, info = env.step(env.unwrapped.task.reference)
    assert reward == 1.0 and terminated and info["passed"]


@pytest.mark.parametrize("completion, reason", [
    ("", "no <answer>"),
    ("the answer is 4", "no <answer>"),
    ("<answer></answer>", "empty"),
    ("<answer>" + "9" * 30_000 + "</answer>", "too long"),
    ("<answer>\x00\xff\x01</answer>", "scored"),
])
def test_malformed_completions(completion: str, reason: str) -> None:
    family = ReasoningGymFamily("gcd")
    verdict = family.verify(family.generate(0, 1), completion)
    assert verdict.reward == 0.0 and not verdict.passed and reason in verdict.reason, verdict


def test_unknown_dataset_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="basic_arithmetic"):
        ReasoningGymFamily("no_such_dataset")
    with pytest.raises(ValueError):
        gym.make("verifarm/ReasoningGym-v0", dataset="composite")
