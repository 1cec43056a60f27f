"""HumanEval's 164 reference solutions pass through the sandbox and broken ones fail (default backend; a
sample on the others)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from verifarm.sandbox.backend import default_backend_name
from verifarm.sandbox.harness import check_python
from verifarm.sandbox.humaneval import broken_solution, load_problems, reference_solution

PROBLEMS = load_problems()
SAMPLE = PROBLEMS[::16]  # 11 problems spread over the set


def _check_all(solutions, problems, backend):
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda pair: check_python(pair[0], pair[1]["test"], pair[1]["entry_point"],
                                                       backend=backend), zip(solutions, problems)))


def test_the_package_ships_164_problems():
    assert len(PROBLEMS) == 164


@pytest.mark.slow
def test_all_reference_solutions_pass_on_the_default_backend():
    backend = default_backend_name()
    outcomes = _check_all([reference_solution(problem) for problem in PROBLEMS], PROBLEMS, backend)
    failed = [(problem["task_id"], outcome.reason) for problem, outcome in zip(PROBLEMS, outcomes)
              if not outcome.passed]
    assert failed == [], failed
    assert {outcome.result.backend for outcome in outcomes} == {backend}


def test_a_sample_passes_and_its_broken_twin_fails(backend: str):
    good = _check_all([reference_solution(problem) for problem in SAMPLE], SAMPLE, backend)
    bad = _check_all([broken_solution(problem) for problem in SAMPLE], SAMPLE, backend)
    assert [outcome.passed for outcome in good] == [True] * len(SAMPLE), [o.reason for o in good if not o.passed]
    assert [outcome.passed for outcome in bad] == [False] * len(SAMPLE)
