"""The verdict audit: every shipped labelled suite scores with 0 wrong verdicts, the math suite meets its quota, and
`verifarm verify audit` reports, exits and refuses bad input as documented."""

import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from verifarm.cli import app
from verifarm.envs.audit import CaseError, format_report, load_cases, parse_cases, run_audit
from verifarm.envs.catalog import get_family

CASES_DIR = Path(__file__).parent / "cases"
MATH_PAIRS = CASES_DIR / "math_pairs.jsonl"
MATH_ENV = "verifarm/MathAnswer-v0"
# Every normalisation kind the issue lists, and the conventions, each a group of ids in the math suite.
MATH_GROUPS = {
    "frac",
    "approx",
    "number",
    "scientific",
    "repeating",
    "thousands",
    "unicode",
    "currency",
    "units",
    "percent",
    "interval",
    "equation",
    "relation",
    "complex",
    "polynomial",
    "constant",
    "set",
    "tuple",
    "garbage",
    "bad-gold",
}
runner = CliRunner()


def _suites() -> list[tuple[str, str]]:
    """(file name, env id) for every env found in every shipped case file (the env id is each line's "env")."""
    found = set()
    for path in sorted(CASES_DIR.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                found.add((path.name, json.loads(line).get("env") or "(no env field)"))
    return sorted(found)


@pytest.mark.parametrize("file_name, env_id", _suites())
def test_every_shipped_suite_has_no_wrong_verdict(file_name: str, env_id: str) -> None:
    assert env_id.startswith("verifarm/"), f"every line of a shipped suite names its env: {file_name}"
    cases = [case for case in load_cases(CASES_DIR / file_name) if case.env == env_id]
    report = run_audit(env_id, cases)
    assert len(report.results) == len(cases)
    assert not report.wrong, format_report(report, file_name)


def test_math_suite_meets_its_quota_and_covers_every_kind() -> None:
    cases = load_cases(MATH_PAIRS)
    assert all(case.env == MATH_ENV and case.is_pair for case in cases)
    unequal = [case for case in cases if case.expected == "fail"]
    assert len(cases) >= 300 and len(unequal) >= 100
    assert sum(case.kind == "near-miss" for case in unequal) >= 50
    groups = defaultdict(set)
    for case in cases:
        groups[case.case_id.rsplit("-", 1)[0]].add(case.expected)
    assert set(groups) == MATH_GROUPS
    # every normalisation kind is tested both ways: a spelling that must pass and a near miss that must fail
    for group in MATH_GROUPS - {"garbage", "bad-gold", "approx"}:
        assert groups[group] >= {"pass", "fail"}, group


def _write(tmp_path: Path, rows: list, name: str = "cases.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    return path


def test_cli_prints_the_confusion_matrix_and_exits_zero_when_every_verdict_is_right(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"id": "half", "gold": "\\frac{1}{2}", "answer": "0.5", "expected": "pass", "kind": "equal"},
            {
                "id": "exponent",
                "gold": "2.5\\times10^{-4}",
                "answer": "2.5e-5",
                "expected": "fail",
                "kind": "near-miss",
            },
            {"id": "broken-gold", "gold": "\\frac{", "answer": "1", "expected": "infra_error"},
        ],
    )
    result = runner.invoke(app, ["verify", "audit", MATH_ENV, str(path), "--every-case"])
    assert result.exit_code == 0, result.output
    assert "confusion matrix" in result.output and "wrong verdicts: 0" in result.output
    rows = {
        line.split()[0]: line.split()[1:]
        for line in result.output.splitlines()
        if line.strip().split(" ")[0] in ("pass", "fail", "infra_error") and len(line.split()) == 4
    }
    assert rows == {"pass": ["1", "0", "0"], "fail": ["0", "1", "0"], "infra_error": ["0", "0", "1"]}
    assert "time per case" in result.output and "broken-gold" in result.output and " ms" in result.output


def test_cli_lists_each_wrong_verdict_with_its_reason_and_exits_one(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"id": "right", "gold": "3", "answer": "x = 3", "expected": "pass", "kind": "equal"},
            {
                "id": "mislabelled",
                "gold": "3\\text{ km}",
                "answer": "3 m",
                "expected": "pass",
                "kind": "equal",
                "note": "deliberately wrong label",
            },
        ],
    )
    result = runner.invoke(app, ["verify", "audit", MATH_ENV, str(path)])
    assert result.exit_code == 1, result.output
    assert "wrong verdicts: 1" in result.output
    line = next(line for line in result.output.splitlines() if "mislabelled" in line)
    assert "expected pass, got fail" in line and "different units" in line and "deliberately" in line


def test_cli_differential_lists_where_the_second_implementations_disagree(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {
                "id": "approximation",
                "gold": "\\frac{1}{3}",
                "answer": "0.3333333",
                "expected": "fail",
                "kind": "unequal",
            },
            {"id": "plain", "gold": "7", "answer": "7", "expected": "pass", "kind": "equal"},
        ],
    )
    result = runner.invoke(app, ["verify", "audit", MATH_ENV, str(path), "--differential"])
    assert result.exit_code == 0, result.output
    # math-verify alone rounds to 6 places, so it calls the approximation equal; the env does not
    assert "math-verify disagrees with the env on 1 of 2 pairs" in result.output
    assert "approximation: env fail, math-verify pass, expected fail" in result.output
    assert "sympy disagrees with the env on 0 of 2 pairs" in result.output


def test_seeded_cases_run_through_the_family_generator(tmp_path: Path) -> None:
    family = get_family("verifarm/Addition-v0")
    task = family.generate(3, 2)
    wrong = int(task.data["answer"]) + 1
    path = _write(
        tmp_path,
        [
            {
                "id": "reference",
                "env": "verifarm/Addition-v0",
                "options": {},
                "seed": 3,
                "difficulty": 2,
                "completion": task.reference,
                "expected": "pass",
            },
            {"id": "off-by-one", "seed": 3, "difficulty": 2, "completion": f"Answer: {wrong}", "expected": "fail"},
        ],
    )
    report = run_audit("verifarm/Addition-v0", load_cases(path))
    assert [result.actual for result in report.results] == ["pass", "fail"] and not report.wrong


@pytest.mark.parametrize(
    "rows, env_id, message",
    [
        (None, MATH_ENV, "cases file not found"),
        (['{"id": "a", "gold": "1", "answer": "1", "expected": "pass"}', "{not json"], MATH_ENV, ":2: not valid JSON"),
        ([{"id": "a", "gold": "1", "answer": "1", "expected": "pass", "colour": "red"}], MATH_ENV, "unknown field"),
        ([{"id": "a", "gold": "1", "answer": "1", "expected": "yes"}], MATH_ENV, "expected must be one of"),
        ([{"id": "a", "gold": "1", "answer": "2", "expected": "pass", "kind": "near-miss"}], MATH_ENV, "contradicts"),
        ([{"id": "a", "gold": "1", "answer": "1", "expected": "pass"}] * 2, MATH_ENV, "duplicate id"),
        ([{"id": "a", "seed": "three", "completion": "x", "expected": "pass"}], MATH_ENV, "seed must be an integer"),
        ([{"id": "a", "gold": "1", "answer": "1", "expected": "pass"}], "verifarm/NoSuchEnv-v9", "unknown env id"),
        (
            [{"id": "a", "env": "verifarm/Addition-v0", "gold": "1", "answer": "1", "expected": "pass"}],
            MATH_ENV,
            "is for verifarm/Addition-v0",
        ),
        ([{"id": "a", "gold": "1", "answer": "1", "expected": "pass"}], "verifarm/Addition-v0", "builds no task"),
        ([{"id": "a", "seed": 1, "difficulty": 99, "completion": "x", "expected": "pass"}], MATH_ENV, "difficulty"),
    ],
)
def test_cli_refuses_bad_input_with_one_line_and_exit_two(tmp_path: Path, rows, env_id: str, message: str) -> None:
    path = tmp_path / "missing.jsonl" if rows is None else _write(tmp_path, rows)
    result = runner.invoke(app, ["verify", "audit", env_id, str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_case_parser_accepts_exactly_the_agreed_fields() -> None:
    seeded = {
        "id": "s",
        "env": "verifarm/HumanEval-v0",
        "options": {},
        "seed": 3,
        "difficulty": 1,
        "completion": "def f(): pass",
        "expected": "fail",
        "note": "n",
    }
    pair = {"id": "p", "env": MATH_ENV, "gold": "1", "answer": "1", "expected": "pass", "kind": "equal", "note": ""}
    cases = parse_cases([json.dumps(seeded), "", json.dumps(pair)])
    assert [case.is_pair for case in cases] == [False, True]
    assert cases[0].seed == 3 and cases[0].options == {} and cases[1].kind == "equal"
    with pytest.raises(CaseError, match="unknown field"):
        parse_cases([json.dumps({**seeded, "kind": "equal"})])  # kind labels answer pairs only
    with pytest.raises(CaseError, match="no cases"):
        parse_cases(["", "  "])
