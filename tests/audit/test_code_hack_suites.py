"""The shipped reward-hack suites for the code envs: every case is judged as labelled, on every sandbox backend
that isolates (docker and bwrap where they work; the process backend is unsafe by design and skipped).

A case is a completion (most of them written to cheat, some honest) for ``get_family(env, **options)``'s task
``generate(seed, difficulty)``, labelled "pass" or "fail"; see ``build_code_hack_suites.py`` for the tricks.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from verifarm.envs.catalog import get_family
from verifarm.sandbox.selection import close_backends, probe_backend

CASES_DIR = Path(__file__).parent / "cases"
SUITES = {
    "humaneval_hacks.jsonl": "verifarm/HumanEval-v0",
    "python_function_hacks.jsonl": "verifarm/PythonFunction-v0",
    "c_program_hacks.jsonl": "verifarm/CProgram-v0",
}
FIELDS = {"id", "env", "options", "seed", "difficulty", "completion", "expected", "note"}


def load(file_name: str) -> list[dict]:
    with open(CASES_DIR / file_name) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def isolating_backends() -> list:
    params = []
    for name in ("docker", "bwrap"):
        reason = probe_backend(name)
        marks = [pytest.mark.slow] + ([pytest.mark.skip(reason=f"{name} unavailable: {reason}")] if reason else [])
        if name == "docker":
            marks.append(pytest.mark.docker)
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(scope="module", autouse=True)
def _close_backends_at_end():
    yield
    close_backends()


def test_the_suites_are_well_formed_and_large_enough() -> None:
    cases = {file_name: load(file_name) for file_name in SUITES}
    ids = [case["id"] for suite in cases.values() for case in suite]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    for file_name, suite in cases.items():
        for case in suite:
            assert set(case) == FIELDS, (case["id"], set(case) ^ FIELDS)
            assert case["env"] == SUITES[file_name] and case["expected"] in ("pass", "fail"), case["id"]
            assert isinstance(case["options"], dict) and case["completion"].strip() and case["note"], case["id"]
        # Both labels in every suite, so a verifier that fails (or passes) everything is caught.
        assert {case["expected"] for case in suite} == {"pass", "fail"}, file_name
    assert sum(case["expected"] == "fail" for suite in cases.values() for case in suite) >= 50


@pytest.mark.parametrize("backend", isolating_backends())
@pytest.mark.parametrize("file_name", sorted(SUITES))
def test_every_case_is_judged_as_labelled(file_name: str, backend: str) -> None:
    cases = load(file_name)
    families: dict[str, object] = {}
    for case in cases:
        key = json.dumps([case["env"], case["options"]], sort_keys=True)
        if key not in families:
            families[key] = get_family(case["env"], **case["options"], backend=backend)

    def judge(case: dict):
        family = families[json.dumps([case["env"], case["options"]], sort_keys=True)]
        return family.verify(family.generate(case["seed"], case["difficulty"]), case["completion"])

    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = list(pool.map(judge, cases))
    wrong = [
        (case["id"], case["expected"], verdict.reason, verdict.infra_error)
        for case, verdict in zip(cases, verdicts)
        if verdict.infra_error or verdict.passed != (case["expected"] == "pass")
    ]
    assert wrong == [], wrong
    for case, verdict in zip(cases, verdicts):
        assert verdict.details["sandbox_backend"] in (backend, "none"), (case["id"], verdict.details)
        assert verdict.details["verifier_version"] and verdict.details.get("harness_reason"), (case["id"], verdict)
