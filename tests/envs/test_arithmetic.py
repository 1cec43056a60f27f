"""Arithmetic family: worked solutions are true, references score 1.0, wrong and malformed answers score 0."""

import re

import pytest

from verifarm.envs.arithmetic import (
    ArithmeticFamily,
    exact_result,
    extract_answer,
    format_prompt,
    units_first_addition,
    worked_solution,
)

STEP_LINE = re.compile(r"^(\d+)([+\-*])(\d+)(?:([+\-])(\d+))?=(\d+) (\d+)$")


def _check_lines_are_true(solution: str) -> None:
    lines = solution.rstrip("\n").split("\n")
    assert lines[-1].startswith("Answer: ")
    for line in lines[:-1]:
        if line.startswith("-("):
            continue
        match = STEP_LINE.match(line)
        assert match, f"step line {line!r} is not in the documented format"
        x, op, y, op2, z, result, _running = match.groups()
        value = exact_result(int(x), int(y), op)
        if op2:
            value = exact_result(value, int(z), op2)
        assert value == int(result), f"step line {line!r} is not a true equation"


@pytest.mark.parametrize("op", ["+", "-", "*"])
def test_worked_solutions_are_true_and_end_with_the_exact_answer(op: str) -> None:
    family = ArithmeticFamily(operations=(op,))
    for difficulty in range(1, 21):
        for seed in range(25):
            task = family.generate(seed, difficulty)
            assert task.prompt.endswith("=?\n")
            _check_lines_are_true(task.reference)
            assert extract_answer(task.reference) == str(task.data["answer"])
            verdict = family.verify(task, task.reference)
            assert verdict.reward == 1.0 and verdict.passed, (task, verdict)


def test_documented_examples() -> None:
    assert worked_solution(345, 678, "+") == "5+8+0=13 3\n4+7+1=12 23\n3+6+1=10 023\nAnswer: 1023\n"
    assert worked_solution(345, 678, "-") == "-(678-345)\n8-5-0=3 3\n7-4-0=3 33\n6-3-0=3 333\nAnswer: -333\n"
    assert worked_solution(1000, 999, "-").endswith("1-0-1=0 0001\nAnswer: 1\n")
    assert worked_solution(345, 678, "*").endswith("345*600=207000 233910\nAnswer: 233910\n")
    for a, b in [(0, 0), (7, 0), (0, 7), (99999, 1), (10**19, 10**19 - 1), (123456789, 987654321)]:
        for op in "+-*":
            solution = worked_solution(a, b, op)
            _check_lines_are_true(solution)
            assert extract_answer(solution) == str(exact_result(a, b, op))


def test_generation_is_deterministic_and_digits_match_difficulty() -> None:
    family = ArithmeticFamily()
    assert family.generate(7, 5) == family.generate(7, 5)
    prompts = {family.generate(seed, 5).prompt for seed in range(50)}
    assert len(prompts) > 45
    for seed in range(50):
        task = family.generate(seed, 5)
        assert len(str(task.data["a"])) == 5 and len(str(task.data["b"])) == 5


def test_wrong_answers_score_zero() -> None:
    family = ArithmeticFamily()
    for seed in range(50):
        task = family.generate(seed, 4)
        answer = task.data["answer"]
        for wrong in (answer + 1, answer - 1, -answer if answer else 1, answer * 10):
            verdict = family.verify(task, f"some work\nAnswer: {wrong}\n")
            assert verdict.reward == 0.0 and not verdict.passed and verdict.reason == "wrong answer"


def test_only_the_last_answer_counts_and_must_be_canonical() -> None:
    family = ArithmeticFamily(operations=("+",))
    task = family.generate(3, 2)
    answer = task.data["answer"]
    assert family.verify(task, f"Answer: {answer + 1}\nAnswer: {answer}").passed
    assert not family.verify(task, f"Answer: {answer}\nAnswer: {answer + 1}").passed
    assert not family.verify(task, f"Answer: 0{answer}").passed
    assert not family.verify(task, f"Answer: +{answer}").passed
    assert family.verify(task, f"Answer:   {answer}  \n").passed


@pytest.mark.parametrize(
    "completion, reason",
    [
        ("", "no 'Answer:'"),
        ("the answer is 12", "no 'Answer:'"),
        ("Answer:", "not a plain integer"),
        ("Answer: twelve", "not a plain integer"),
        ("Answer: \x00\xff\ud7ff", "not a plain integer"),
        ("Answer: ١٢", "not a plain integer"),
        ("x" * 200_000 + "\nAnswer: 1", "too long"),
    ],
)
def test_malformed_completions_score_zero_with_a_reason(completion: str, reason: str) -> None:
    family = ArithmeticFamily()
    task = family.generate(0, 2)
    verdict = family.verify(task, completion)
    assert verdict.reward == 0.0 and not verdict.passed
    assert reason in verdict.reason


@pytest.mark.parametrize("kwargs", [{"operations": ("/",)}, {"operations": ()}, {"operations": ("+", "+")}])
def test_bad_options_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ArithmeticFamily(**kwargs)


@pytest.mark.parametrize("difficulty", [0, 41])
def test_difficulty_out_of_range_raises(difficulty: int) -> None:
    with pytest.raises(ValueError, match="difficulty"):
        ArithmeticFamily().generate(0, difficulty)


def test_units_first_documented_example() -> None:
    family = ArithmeticFamily(operations=("+",), answer_order="units_first")
    assert format_prompt(345, 678, "+", "units_first") == "(units first) 543+876=?\n"
    assert units_first_addition(345, 678) == "5+8+0=13 3\n4+7+1=12 32\n3+6+1=10 320\nAnswer: 3201\n"
    assert units_first_addition(500, 500, worked=False) == "Answer: 0001\n"
    assert family.verifier_version != ArithmeticFamily(operations=("+",)).verifier_version


@pytest.mark.parametrize("solution", ["worked", "direct"])
def test_units_first_tasks_state_the_order_and_references_score_one(solution: str) -> None:
    family = ArithmeticFamily(operations=("+",), answer_order="units_first", solution=solution)
    default = ArithmeticFamily(operations=("+",))
    for difficulty in range(1, 13):
        for seed in range(20):
            task = family.generate(seed, difficulty)
            a, b = task.data["a"], task.data["b"]
            assert task.prompt == f"(units first) {str(a)[::-1]}+{str(b)[::-1]}=?\n"
            assert set(task.prompt) <= set(family.charset)
            assert (default.generate(seed, difficulty).data["a"], default.generate(seed, difficulty).data["b"]) == (
                a,
                b,
            )
            assert extract_answer(task.reference) == str(a + b)[::-1]
            assert task.reference.count("\n") == (1 if solution == "direct" else max(len(str(a)), len(str(b))) + 1)
            if solution == "worked":
                _check_lines_are_true(task.reference)
            assert family.verify(task, task.reference).passed


def test_units_first_verifier_checks_exactly_that_contract() -> None:
    family = ArithmeticFamily(operations=("+",), answer_order="units_first")
    task = family.generate(0, 3)  # both operands have 3 digits
    total = task.data["answer"]
    units_first = str(total)[::-1]
    # Worked and direct completions are both judged on the Answer line alone.
    assert family.verify(task, f"Answer: {units_first}\n").passed
    assert family.verify(task, f"1+2+0=03 3\nAnswer: {units_first}\n").passed
    # The most-significant-first answer is wrong under this contract (unless it is a palindrome).
    if str(total) != units_first:
        assert family.verify(task, f"Answer: {total}\n").reason == "wrong answer"
    # A trailing zero (a leading zero of the number) is not canonical.
    verdict = family.verify(task, f"Answer: {units_first}0\n")
    assert not verdict.passed and "canonical" in verdict.reason
    assert "not a plain integer" in family.verify(task, f"Answer: -{units_first}\n").reason
    # And the default family still wants today's order.
    default = ArithmeticFamily(operations=("+",))
    same = default.generate(0, 3)
    assert default.verify(same, f"Answer: {total}\n").passed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"answer_order": "backwards"},
        {"answer_order": "units_first"},  # subtraction and multiplication are not defined units first
        {"operations": ("+",), "solution": "sketch"},
    ],
)
def test_bad_answer_order_options_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ArithmeticFamily(**kwargs)


def test_addition_env_takes_the_answer_order_option() -> None:
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    import verifarm.envs  # noqa: F401  (registers the ids)
    from verifarm.envs.catalog import get_family

    family = get_family("verifarm/Addition-v0", answer_order="units_first", solution="direct")
    assert family.generate(1, 2).prompt.startswith("(units first) ")
    env = gymnasium.make("verifarm/Addition-v0", answer_order="units_first").unwrapped
    check_env(env, skip_render_check=True)
    prompt, _ = env.reset(seed=3)
    assert prompt.startswith("(units first) ")
    with pytest.raises(ValueError, match="answer_order"):
        get_family("verifarm/Addition-v0", answer_order="reversed")
