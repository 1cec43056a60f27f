"""HumanEval's 164 reference solutions pass through the sandbox and broken ones fail (default backend; a
sample on the others)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from verifarm.sandbox.harness import check_python
from verifarm.sandbox.humaneval import broken_solution, load_problems, reference_solution
from verifarm.sandbox.selection import default_backend_name

PROBLEMS = load_problems()
SAMPLE = PROBLEMS[::16]  # 11 problems spread over the set


def _check_all(solutions, problems, backend):
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(
            pool.map(
                lambda pair: check_python(
                    pair[0], pair[1]["test"], pair[1]["entry_point"], backend=backend, prompt=pair[1]["prompt"]
                ),
                zip(solutions, problems),
            )
        )


def test_the_package_ships_164_problems():
    assert len(PROBLEMS) == 164


@pytest.mark.slow
def test_all_reference_solutions_pass_and_all_broken_ones_fail_on_the_default_backend():
    backend = default_backend_name()
    outcomes = _check_all([reference_solution(problem) for problem in PROBLEMS], PROBLEMS, backend)
    failed = [
        (problem["task_id"], outcome.reason) for problem, outcome in zip(PROBLEMS, outcomes) if not outcome.passed
    ]
    assert failed == [], failed
    assert {outcome.result.backend for outcome in outcomes} == {backend}
    broken = _check_all([broken_solution(problem) for problem in PROBLEMS], PROBLEMS, backend)
    fooled = [problem["task_id"] for problem, outcome in zip(PROBLEMS, broken) if outcome.passed or outcome.infra_error]
    assert fooled == [], fooled


# Problems whose tests call a helper the prompt defines (an encoder, a polynomial evaluator).
HELPER_PROBLEMS = [PROBLEMS[index] for index in (32, 38, 50)]


def test_problems_with_prompt_helpers_pass_and_their_helpers_cannot_be_replaced(backend: str):
    good = _check_all([reference_solution(problem) for problem in HELPER_PROBLEMS], HELPER_PROBLEMS, backend)
    assert [outcome.passed for outcome in good] == [True] * 3, [o.reason for o in good]
    # Each redefines the prompt's helper so that a trivial entry point would satisfy the tests.
    forged = [
        "import math\ndef poly(xs, x):\n    return 0.0\ndef find_zero(xs):\n    return 0.0\n",
        "def encode_cyclic(s):\n    return s\ndef decode_cyclic(s):\n    return s\n",
        "def encode_shift(s):\n    return s\ndef decode_shift(s):\n    return s\n",
    ]
    bad = _check_all(forged, HELPER_PROBLEMS, backend)
    assert [outcome.passed for outcome in bad] == [False] * 3
    assert not any(outcome.infra_error for outcome in bad)


def test_a_sample_passes_and_its_broken_twin_fails(backend: str):
    good = _check_all([reference_solution(problem) for problem in SAMPLE], SAMPLE, backend)
    bad = _check_all([broken_solution(problem) for problem in SAMPLE], SAMPLE, backend)
    assert [outcome.passed for outcome in good] == [True] * len(SAMPLE), [o.reason for o in good if not o.passed]
    assert [outcome.passed for outcome in bad] == [False] * len(SAMPLE)
