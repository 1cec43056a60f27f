"""MathAnswer: references score 1.0, equivalence over a table of pairs (the same with and without the checker's
lockdown), gold answers that do not parse, timeouts, threads, bad input."""

import json
import threading
import time
from pathlib import Path

import pytest

from verifarm.envs.math_answer import PROBLEM_KINDS, MathAnswerFamily
from verifarm.envs.math_equivalence import MathEquivalenceChecker, judge

# (gold, answer, equivalent?): what the verifier must decide. Gold answers are written as the generators write them.
# Values are exact (see the conventions in math_answer): a rounded decimal is not the fraction it approximates.
EQUIVALENCE_TABLE = [
    # fractions in every spelling
    ("\\frac{1}{2}", "1/2", True),
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{2}", "\\frac12", True),
    ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
    ("\\frac{1}{2}", "2/4", True),
    ("\\frac{1}{2}", "\\frac{2}{4}", True),
    ("\\frac{1}{2}", "0.50", True),
    ("\\frac{1}{2}", "1/3", False),
    ("\\frac{1}{2}", "2", False),
    ("\\frac{1}{2}", "-1/2", False),
    ("\\frac{1}{2}", "0.49", False),
    ("\\frac{1}{2}", "\\frac{2}{1}", False),
    ("-\\frac{5}{3}", "-5/3", True),
    ("-\\frac{5}{3}", "\\frac{-5}{3}", True),
    ("-\\frac{5}{3}", "\\frac{5}{-3}", True),
    ("-\\frac{5}{3}", "5/3", False),
    ("-\\frac{5}{3}", "-3/5", False),
    ("-\\frac{5}{3}", "-1.6666666667", False),
    ("-\\frac{5}{3}", "-1.6", False),
    ("\\frac{66}{19}", "66/19", True),
    ("\\frac{66}{19}", "3.47", False),
    ("\\frac{66}{19}", "\\frac{132}{38}", True),
    ("\\frac{66}{19}", "19/66", False),
    ("\\frac{7}{12}", "7/12", True),
    ("\\frac{7}{12}", "0.5833", False),
    ("\\frac{7}{12}", "0.58333333", False),
    ("\\frac{1}{3}", "0.333", False),
    ("\\frac{1}{3}", "0.3333333", False),
    ("\\frac{1}{3}", "1/3", True),
    ("\\frac{4}{5}", "0.8", True),
    ("\\frac{4}{5}", "8/10", True),
    ("\\frac{4}{5}", "0.08", False),
    ("\\frac{16}{3}", "5.333333333", False),
    ("\\frac{16}{3}", "5 1/3", False),
    # integers and decimals
    ("32", "32", True),
    ("32", "32.0", True),
    ("32", "32.00", True),
    ("32", "\\boxed{32}", True),
    ("32", "$32$", True),
    ("32", "64/2", True),
    ("32", "2^5", True),
    ("32", "2^{5}", True),
    ("32", "31", False),
    ("32", "-32", False),
    ("32", "320", False),
    ("32", "3.2", False),
    ("32", "x", False),
    ("0", "0", True),
    ("0", "-0", True),
    ("0", "0.0", True),
    ("0", "1", False),
    ("-75.514", "-75.514", True),
    ("-75.514", "-75.5140", True),
    ("-75.514", "-\\frac{37757}{500}", True),
    ("-75.514", "75.514", False),
    ("-75.514", "-75.51", False),
    ("-75.514", "-75.515", False),
    ("989.5923950556", "989.5923950556", True),
    ("989.5923950556", "989.59", False),
    ("0.125", "1/8", True),
    ("0.125", "\\frac{1}{8}", True),
    ("0.125", "0.12", False),
    ("0.125", "1/4", False),
    ("12.5", "25/2", True),
    ("12.5", "12.50", True),
    ("12.5", "12", False),
    ("1000", "1,000", True),
    ("1000", "10^3", True),
    ("1000", "10^{3}", True),
    ("1000", "100", False),
    ("-4", "−4", True),
    ("-4", "4", False),
    ("9", "3^2", True),
    ("2", "\\sqrt{4}", True),
    ("3", "\\sqrt{9}", True),
    ("3", "\\sqrt{10}", False),
    ("3", "x = 3", True),
    ("3", "x=3", True),
    ("3", "x = 4", False),
    ("3", "4 = 3", False),
    ("3", "2x = 6", False),
    ("3", "3 \\le 4", False),
    ("3", "x < 4", False),
    ("3", "3, 4", False),
    ("3", "3 \\text{ or } 4", False),
    ("3", "\\{3, 4\\}", False),
    ("3", "\\pm 3", False),
    ("3", "[-10, 10]", False),
    ("\\frac{3}{2}", "x = 3/2", True),
    ("\\frac{3}{2}", "x = \\frac{3}{2}", True),
    ("\\frac{3}{2}", "x = 1.5", True),
    ("\\frac{3}{2}", "x = -1.5", False),
    ("\\frac{27}{2}", "13.5", True),
    ("\\frac{27}{2}", "27/2", True),
    ("\\frac{27}{2}", "13", False),
    # polynomials: order, implicit products, factored forms
    ("4x^{2} - 14x + 12", "4x^2 - 14x + 12", True),
    ("4x^{2} - 14x + 12", "12 - 14x + 4x^2", True),
    ("4x^{2} - 14x + 12", "(2x-3)(2x-4)", True),
    ("4x^{2} - 14x + 12", "4*x^2-14*x+12", True),
    ("4x^{2} - 14x + 12", "2(2x^2 - 7x + 6)", True),
    ("4x^{2} - 14x + 12", "4x^2 - 14x - 12", False),
    ("4x^{2} - 14x + 12", "4x^2 + 14x + 12", False),
    ("4x^{2} - 14x + 12", "4x^2 - 14x", False),
    ("4x^{2} - 14x + 12", "4y^2 - 14y + 12", False),
    ("x^{2} + 5x + 6", "x^2+5x+6", True),
    ("x^{2} + 5x + 6", "(x+2)(x+3)", True),
    ("x^{2} + 5x + 6", "x^2+6x+5", False),
    ("x^{2} + 5x + 6", "x^2+5x", False),
    ("x^{2} - 1", "(x-1)(x+1)", True),
    ("x^{2} - 1", "(x-1)(x-1)", False),
    ("x^{2} - 1", "x^2+1", False),
    ("6x^{2} - x - 2", "(2x+1)(3x-2)", True),
    ("6x^{2} - x - 2", "(2x-1)(3x+2)", False),
    ("2x + 1", "1 + 2x", True),
    ("2x + 1", "2*x+1", True),
    ("2x + 1", "x + x + 1", True),
    ("2x + 1", "2x - 1", False),
    ("x^{3} - 6x^{2} + 11x - 6", "(x-1)(x-2)(x-3)", True),
    ("x^{3} - 6x^{2} + 11x - 6", "(x-1)(x-2)(x+3)", False),
    ("-x^{2} + 4", "4 - x^2", True),
    ("-x^{2} + 4", "(2-x)(2+x)", True),
    ("-x^{2} + 4", "x^2 - 4", False),
    # irrational and symbolic constants
    ("\\sqrt{2}", "2^{1/2}", True),
    ("\\sqrt{2}", "\\sqrt{2}", True),
    ("\\sqrt{2}", "1.414", False),
    ("\\pi", "\\pi", True),
    ("\\pi", "3.14", False),
    # not an answer at all
    ("5", "", False),
    ("5", "five hundred", False),
    ("5", "\\frac{", False),
    ("5", "((((((((1", False),
    ("5", "NaN", False),
    ("5", "\\infty", False),
]


@pytest.fixture(scope="module")
def family():
    family = MathAnswerFamily()
    yield family
    family.close()


@pytest.fixture(scope="module")
def checker():
    checker = MathEquivalenceChecker(timeout_seconds=3)
    yield checker
    checker.close()


def test_table_is_large_and_balanced() -> None:
    assert len(EQUIVALENCE_TABLE) >= 100
    assert sum(expected for _, _, expected in EQUIVALENCE_TABLE) >= 40
    assert sum(not expected for _, _, expected in EQUIVALENCE_TABLE) >= 40


def test_equivalence_table(checker: MathEquivalenceChecker) -> None:
    wrong = []
    for gold, answer, expected in EQUIVALENCE_TABLE:
        result = checker.check(gold, answer)
        assert not result.infra_error, (gold, answer, result)
        if result.equivalent != expected:
            wrong.append((gold, answer, expected, result.detail))
    assert not wrong, wrong


def test_references_score_one_across_seeds(family: MathAnswerFamily) -> None:
    seen: dict[str, int] = {}
    for difficulty in range(1, 6):
        for seed in range(60):
            task = family.generate(seed, difficulty)
            assert task.prompt.endswith("\n")
            verdict = family.verify(task, task.reference)
            assert verdict.passed and verdict.reward == 1.0, (task, verdict)
            # some go through math-verify rather than the identical-string shortcut
            if seen.get(task.data["kind"], 0) < 3:
                verdict = family.verify(task, f"I am sure.\nAnswer: {task.data['answer']} + 0\n")
                assert verdict.passed and "equivalent" in verdict.reason, (task, verdict)
            seen[task.data["kind"]] = seen.get(task.data["kind"], 0) + 1
    assert set(seen) == set(PROBLEM_KINDS)


def test_wrong_answers_score_zero(family: MathAnswerFamily) -> None:
    for seed in range(10):
        task = family.generate(seed, 2)
        verdict = family.verify(task, f"Answer: {task.data['answer']} + 1\n")
        assert verdict.reward == 0.0 and not verdict.passed and not verdict.infra_error, (task, verdict)


def test_generation_is_deterministic() -> None:
    first, second = MathAnswerFamily(), MathAnswerFamily()
    assert [first.generate(s, 3) for s in range(20)] == [second.generate(s, 3) for s in range(20)]
    assert len({first.generate(s, 3).prompt for s in range(40)}) > 35


@pytest.mark.parametrize(
    "completion, reason",
    [
        ("", "no 'Answer:'"),
        ("the answer is 5", "no 'Answer:'"),
        ("Answer:   \n", "nothing after"),
        ("Answer: " + "1+" * 400 + "1", "answer too long"),
        ("x" * 100_000 + "\nAnswer: 1", "too long"),
        ("Answer: \x00\x01\xff\ufffd", "wrong answer"),
    ],
)
def test_malformed_completions_score_zero(family: MathAnswerFamily, completion: str, reason: str) -> None:
    verdict = family.verify(family.generate(0, 1), completion)
    assert verdict.reward == 0.0 and not verdict.passed and not verdict.infra_error
    assert reason in verdict.reason


def test_hostile_answer_is_cut_off_by_the_timeout() -> None:
    checker = MathEquivalenceChecker(timeout_seconds=1)
    try:
        start = time.monotonic()
        result = checker.check("5", "9^{9^{9^{9^{9}}}}")
        # a timeout is the checker giving up, not a judgement of the answer: an infra error, never a verdict
        assert not result.equivalent and result.infra_error and result.timed_out, result
        assert time.monotonic() - start < 10
        assert checker.check("5", "10/2").equivalent  # a fresh child takes over after a kill
    finally:
        checker.close()


def test_checks_work_from_worker_threads(family: MathAnswerFamily) -> None:
    tasks = [family.generate(seed, 2) for seed in range(8)]
    verdicts: list = [None] * len(tasks)

    def check(index: int) -> None:
        verdicts[index] = family.verify(tasks[index], f"Answer: {tasks[index].data['answer']} * 1")

    threads = [threading.Thread(target=check, args=(i,)) for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(v is not None and v.passed for v in verdicts), verdicts


def test_bad_options_raise_value_error() -> None:
    with pytest.raises(ValueError, match="kinds"):
        MathAnswerFamily(kinds=("calculus",))
    with pytest.raises(ValueError, match="timeout_seconds"):
        MathEquivalenceChecker(timeout_seconds=0)


PAIRS_FILE = Path(__file__).parents[1] / "audit" / "cases" / "math_pairs.jsonl"


# Generous: a check timing out on one side only (a loaded machine) would be a difference not due to the lockdown.
LOCKDOWN_TEST_TIMEOUT = 10


def _unlocked_outcome(gold: str, answer: str) -> str:
    """The same judgement in this process: no chroot, no de-privileging, modules imported whenever sympy wants."""
    reply = judge(gold, answer, LOCKDOWN_TEST_TIMEOUT)
    return "infra_error" if "gold_error" in reply else "pass" if reply["equivalent"] else "fail"


def test_lockdown_changes_no_verdict_over_the_whole_labelled_table() -> None:
    pairs = [(gold, answer) for gold, answer, _ in EQUIVALENCE_TABLE]
    pairs += [(case["gold"], case["answer"]) for case in map(json.loads, PAIRS_FILE.read_text().splitlines())]
    assert len(pairs) > 450
    differences = []
    checker = MathEquivalenceChecker(timeout_seconds=LOCKDOWN_TEST_TIMEOUT)
    for gold, answer in pairs:
        locked = checker.check(gold, answer)
        locked_outcome = "infra_error" if locked.infra_error else "pass" if locked.equivalent else "fail"
        if locked_outcome != _unlocked_outcome(gold, answer):
            differences.append((gold, answer, locked_outcome, locked.detail))
    checker.close()
    assert not differences, differences


def test_numbers_differing_only_in_their_exponent_are_unequal(checker: MathEquivalenceChecker) -> None:
    # under the old lockdown sympy could not import its lazily loaded modules and these two compared equal
    for gold, answer in (("2.5e-4", "2.5e-5"), ("4.2\\times10^{-7}", "4.2\\times10^{-6}"), ("3e8", "3e9")):
        result = checker.check(gold, answer)
        assert not result.equivalent and not result.infra_error, (gold, answer, result)
    assert checker.check("2.5e-4", "2.5\\times10^{-4}").equivalent


def test_a_gold_that_does_not_parse_is_an_infra_error_naming_the_task(family: MathAnswerFamily) -> None:
    task = family.task_from_gold("\\frac{", task_id="broken-gold-7")
    verdict = family.verify(task, family.completion_for("1"))
    assert verdict.infra_error and not verdict.passed and verdict.reward == 0.0
    assert "broken-gold-7" in verdict.reason and "did not parse" in verdict.reason
    assert family.verifier_version == "math-answer-2" and verdict.details["verifier_version"] == "math-answer-2"


def test_task_from_gold_scores_answers_in_the_env_format(family: MathAnswerFamily) -> None:
    task = family.task_from_gold("40\\text{ euros}", task_id="price")
    assert family.verify(task, task.reference).passed
    assert family.verify(task, family.completion_for("40")).passed
    verdict = family.verify(task, family.completion_for("40 dollars"))
    assert not verdict.passed and "different units" in verdict.reason
    with pytest.raises(ValueError, match="gold"):
        family.task_from_gold("  ")


def _judge_that_trips_math_verify(gold: str, answer: str, timeout_seconds: int) -> dict:
    """Stands in for a comparison during which math-verify caught an exception and answered False."""
    import logging

    try:
        raise TypeError("cannot compare Interval and Matrix")
    except TypeError:
        logging.getLogger("math_verify.grader").debug("Error during comparison", exc_info=True)
    return {"equivalent": False, "parsed": f"{gold} vs {answer}"}


def test_an_exception_math_verify_swallows_is_not_a_verdict() -> None:
    from verifarm.envs.math_equivalence import _handler

    reply = _handler(_judge_that_trips_math_verify, 3)({"gold": "1", "answer": "1"})
    assert "error" in reply and "TypeError: cannot compare" in reply["error"]
    # and the checker turns a handler "error" into an infra error (see MathEquivalenceChecker.check)
