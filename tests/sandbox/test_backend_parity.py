"""HumanEval through every backend CI has: references, and mutants of them, get identical verdicts on each.

The mutants are made here from the references, so they fail (or survive) for varied reasons: a body that
returns None, one comparison or arithmetic operator flipped, an exit before the tests run, a crash."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from verifarm.sandbox.harness import check_python
from verifarm.sandbox.humaneval import broken_solution, load_problems, reference_solution
from verifarm.sandbox.selection import BACKEND_NAMES, probe_backend

PROBLEMS = load_problems()[::8]  # 21 problems spread over the set
FLIPS = ((" < ", " >= "), (" > ", " <= "), (" == ", " != "), (" + ", " - "), (" - ", " + "), (" * ", " + "))


def flipped_operator(problem: dict) -> str | None:
    """The reference with its first flippable operator changed, or None when it has none."""
    body = problem["canonical_solution"]
    for old, new in FLIPS:
        if old in body:
            return problem["prompt"] + body.replace(old, new, 1)
    return None


def mutants(problem: dict) -> dict[str, str]:
    found = {
        "reference": reference_solution(problem),
        "returns_none": broken_solution(problem),
        "exits_early": problem["prompt"] + "    pass\nimport sys\nsys.exit(0)\n",
        "crashes": problem["prompt"] + "    return 1 // 0\n",
    }
    flipped = flipped_operator(problem)
    if flipped is not None:
        found["operator_flipped"] = flipped
    return found


def test_references_and_mutants_get_identical_verdicts_on_every_backend():
    cases = [(problem, kind, source) for problem in PROBLEMS for kind, source in mutants(problem).items()]
    verdicts = {}
    for backend in [name for name in BACKEND_NAMES if probe_backend(name) is None]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = list(
                pool.map(
                    lambda case, backend=backend: check_python(
                        case[2], case[0]["test"], case[0]["entry_point"], backend=backend, prompt=case[0]["prompt"]
                    ),
                    cases,
                )
            )
        assert not any(outcome.infra_error for outcome in outcomes), [o.reason for o in outcomes if o.infra_error]
        verdicts[backend] = {
            (problem["task_id"], kind): (outcome.passed, outcome.result.status.value)
            for (problem, kind, _), outcome in zip(cases, outcomes)
        }
    first, *others = verdicts
    for other in others:
        differing = {
            key: (verdicts[first][key], verdicts[other][key])
            for key in verdicts[first]
            if verdicts[first][key] != verdicts[other][key]
        }
        assert differing == {}, f"{first} vs {other}: {differing}"
    passed = {key for key, (ok, _) in verdicts[first].items() if ok}
    assert {key for key in passed if key[1] != "operator_flipped"} == {(p["task_id"], "reference") for p in PROBLEMS}
    flipped = [key for key in verdicts[first] if key[1] == "operator_flipped"]
    assert len(flipped) >= 10 and len([key for key in flipped if key not in passed]) >= len(flipped) // 2
