"""The verdict audit: labelled cases run through an env's real path (its family's generate and verify), compared
with their labels, summarised as a confusion matrix, the disagreements with their reasons and the time per case.

A case file is JSONL, one object per line, of one of two shapes:

- a completion for a seeded task: ``{"id", "env"?, "options"?, "seed", "difficulty"?, "completion", "expected",
  "note"?}``; the task is ``get_family(env, **options).generate(seed, difficulty)`` (difficulty defaults to the
  family's lowest) and the verdict ``family.verify(task, completion)``;
- an answer pair: ``{"id", "env"?, "gold", "answer", "expected", "kind"?, "note"?}``; the task is built from the
  gold by the family's ``task_from_gold`` and the completion from the answer by its ``completion_for``.

``expected`` is ``pass``, ``fail`` or ``infra_error``; a pair's ``kind`` (``equal``, ``unequal``, ``near-miss``)
must agree with it. ``env``, when given, must be the env audited. A differential audit also scores each pair with
the env's second implementations (``SECOND_IMPLEMENTATIONS``) and lists where they part from the env.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifarm.envs.catalog import FamilyCache
from verifarm.envs.math_equivalence import MathEquivalenceChecker

OUTCOMES = ("pass", "fail", "infra_error")
PAIR_KINDS = {"equal": "pass", "unequal": "fail", "near-miss": "fail"}
COMMON_FIELDS = {"id", "env", "expected", "note"}
SEEDED_FIELDS = COMMON_FIELDS | {"options", "seed", "difficulty", "completion"}
PAIR_FIELDS = COMMON_FIELDS | {"gold", "answer", "kind"}
# Env id -> the other implementations a differential audit compares it with (see MathEquivalenceChecker).
SECOND_IMPLEMENTATIONS: dict[str, tuple[str, ...]] = {"verifarm/MathAnswer-v0": ("math-verify", "sympy")}


class CaseError(ValueError):
    """A case file that cannot be audited: the message names the file, the line and what to fix."""


@dataclass(frozen=True)
class AuditCase:
    case_id: str
    expected: str
    env: str | None = None
    note: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    difficulty: int | None = None
    completion: str | None = None
    gold: str | None = None
    answer: str | None = None
    kind: str | None = None

    @property
    def is_pair(self) -> bool:
        return self.gold is not None


@dataclass(frozen=True)
class CaseResult:
    case: AuditCase
    actual: str  # one of OUTCOMES
    reason: str
    seconds: float

    @property
    def correct(self) -> bool:
        return self.actual == self.case.expected


@dataclass(frozen=True)
class Disagreement:
    implementation: str
    case: AuditCase
    env_outcome: str
    other_outcome: str
    reason: str


@dataclass(frozen=True)
class AuditReport:
    env_id: str
    verifier_version: str
    results: list[CaseResult]
    disagreements: list[Disagreement] = field(default_factory=list)
    implementations: tuple[str, ...] = ()  # the second implementations that were run
    differential: bool = False  # whether a differential audit was asked for

    @property
    def wrong(self) -> list[CaseResult]:
        return [result for result in self.results if not result.correct]

    def confusion(self) -> dict[tuple[str, str], int]:
        """(expected, actual) -> number of cases."""
        return dict(Counter((result.case.expected, result.actual) for result in self.results))


def _case_error(source: str, line_number: int, message: str) -> CaseError:
    return CaseError(f"{source}:{line_number}: {message}")


def parse_case(obj: Any, source: str = "<cases>", line_number: int = 1) -> AuditCase:
    """One case from its decoded JSON object; ``CaseError`` names what is wrong."""
    if not isinstance(obj, dict):
        raise _case_error(source, line_number, f"a case is a JSON object, got {type(obj).__name__}")
    is_pair = "gold" in obj or "answer" in obj
    allowed = PAIR_FIELDS if is_pair else SEEDED_FIELDS
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _case_error(
            source,
            line_number,
            f"unknown field(s) {unknown}; a {'pair' if is_pair else 'seeded'} case has {sorted(allowed)}",
        )
    required = ("id", "expected", "gold", "answer") if is_pair else ("id", "expected", "seed", "completion")
    missing = [name for name in required if name not in obj]
    if missing:
        raise _case_error(source, line_number, f"missing field(s) {missing}")
    texts = (
        ("id", "gold", "answer", "note", "env", "kind", "expected")
        if is_pair
        else ("id", "completion", "note", "env", "expected")
    )
    for name in texts:
        if name in obj and not isinstance(obj[name], str):
            raise _case_error(source, line_number, f"{name} must be a string, got {obj[name]!r}")
    if not obj["id"].strip():
        raise _case_error(source, line_number, "id must not be empty")
    if obj["expected"] not in OUTCOMES:
        raise _case_error(source, line_number, f"expected must be one of {list(OUTCOMES)}, got {obj['expected']!r}")
    if is_pair:
        kind = obj.get("kind")
        if kind is not None and kind not in PAIR_KINDS:
            raise _case_error(source, line_number, f"kind must be one of {sorted(PAIR_KINDS)}, got {kind!r}")
        if kind is not None and obj["expected"] != "infra_error" and PAIR_KINDS[kind] != obj["expected"]:
            raise _case_error(source, line_number, f"kind {kind!r} contradicts expected {obj['expected']!r}")
        return AuditCase(
            obj["id"],
            obj["expected"],
            obj.get("env"),
            obj.get("note", ""),
            gold=obj["gold"],
            answer=obj["answer"],
            kind=kind,
        )
    for name in ("seed", "difficulty"):
        if name in obj and (not isinstance(obj[name], int) or isinstance(obj[name], bool)):
            raise _case_error(source, line_number, f"{name} must be an integer, got {obj[name]!r}")
    options = obj.get("options", {})
    if not isinstance(options, dict):
        raise _case_error(source, line_number, f"options must be an object, got {options!r}")
    return AuditCase(
        obj["id"],
        obj["expected"],
        obj.get("env"),
        obj.get("note", ""),
        options=options,
        seed=obj["seed"],
        difficulty=obj.get("difficulty"),
        completion=obj["completion"],
    )


def parse_cases(lines: Iterable[str], source: str = "<cases>") -> list[AuditCase]:
    """Cases from JSONL lines (blank lines skipped); ids must be unique."""
    cases: list[AuditCase] = []
    seen: dict[str, int] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise _case_error(source, line_number, f"not valid JSON ({error.msg} at column {error.colno})") from None
        case = parse_case(obj, source, line_number)
        if case.case_id in seen:
            raise _case_error(
                source, line_number, f"duplicate id {case.case_id!r} (first on line {seen[case.case_id]})"
            )
        seen[case.case_id] = line_number
        cases.append(case)
    if not cases:
        raise CaseError(f"{source}: no cases")
    return cases


def load_cases(path: str | Path) -> list[AuditCase]:
    path = Path(path)
    if not path.is_file():
        raise CaseError(f"cases file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CaseError(f"cannot read {path}: {error}") from None
    return parse_cases(text.splitlines(), str(path))


def check_env_ids(env_id: str, cases: list[AuditCase]) -> None:
    for case in cases:
        if case.env is not None and case.env != env_id:
            raise CaseError(f"case {case.case_id!r} is for {case.env}, not {env_id}")


def outcome_of(verdict: Any) -> str:
    return "infra_error" if verdict.infra_error else "pass" if verdict.passed else "fail"


def _task_and_completion(family: Any, case: AuditCase) -> tuple[Any, str]:
    if case.is_pair:
        if not hasattr(family, "task_from_gold"):
            raise CaseError(
                f"case {case.case_id!r} is an answer pair, but {family.name} builds no task from a gold "
                f"answer (give seed and completion instead)"
            )
        return family.task_from_gold(case.gold, task_id=case.case_id), family.completion_for(case.answer)
    difficulty = family.min_difficulty if case.difficulty is None else case.difficulty
    try:
        task = family.generate(case.seed, difficulty)
    except ValueError as error:
        raise CaseError(f"case {case.case_id!r}: {error}") from None
    if not isinstance(case.completion, str):
        raise CaseError(f"case {case.case_id!r}: completion must be a string, got {case.completion!r}")
    return task, case.completion


def run_case(family: Any, case: AuditCase) -> CaseResult:
    """The env's verdict on one case, through the family's own generate and verify."""
    task, completion = _task_and_completion(family, case)
    started = time.perf_counter()
    try:
        verdict = family.verify(task, completion)
    except Exception as error:
        return CaseResult(
            case, "infra_error", f"verify raised {type(error).__name__}: {error}"[:300], time.perf_counter() - started
        )
    return CaseResult(case, outcome_of(verdict), verdict.reason, time.perf_counter() - started)


def run_differential(
    env_id: str, results: list[CaseResult], timeout_seconds: int = 5
) -> tuple[tuple[str, ...], list[Disagreement]]:
    """Scores every answer pair with each second implementation of ``env_id``; the cases where one parts from the
    env's verdict. Envs without a second implementation give none."""
    implementations = SECOND_IMPLEMENTATIONS.get(env_id, ())
    disagreements: list[Disagreement] = []
    for implementation in implementations:
        checker = MathEquivalenceChecker(timeout_seconds=timeout_seconds, implementation=implementation)
        try:
            for result in results:
                gold, answer = result.case.gold, result.case.answer
                if gold is None or answer is None:  # not an answer pair
                    continue
                other = checker.check(gold, answer)
                outcome = "infra_error" if other.infra_error else "pass" if other.equivalent else "fail"
                if outcome != result.actual:
                    disagreements.append(
                        Disagreement(implementation, result.case, result.actual, outcome, other.detail)
                    )
        finally:
            checker.close()
    return implementations, disagreements


def run_audit(env_id: str, cases: list[AuditCase], differential: bool = False) -> AuditReport:
    """Every case through ``env_id``'s family; ``CaseError`` (before any verdict) for cases that do not fit."""
    check_env_ids(env_id, cases)
    families = FamilyCache()
    try:
        # an unknown env id or options a family refuses fail here, before any case runs
        verifier_version = families.get(env_id, cases[0].options).verifier_version
        results = [run_case(families.get(env_id, case.options), case) for case in cases]
    finally:
        families.close()
    implementations, disagreements = run_differential(env_id, results) if differential else ((), [])
    return AuditReport(env_id, verifier_version, results, disagreements, implementations, differential)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_report(report: AuditReport, source: str = "", every_case: bool = False) -> str:
    """The audit as text: header, confusion matrix, wrong verdicts with reasons, time per case, differential."""
    lines = [
        f"audit of {report.env_id} (verifier {report.verifier_version}): {len(report.results)} cases"
        + (f" from {source}" if source else "")
    ]
    confusion = report.confusion()
    lines.append("confusion matrix (rows: expected, columns: the env's verdict)")
    lines.append(f"{'':>14}" + "".join(f"{outcome:>13}" for outcome in OUTCOMES))
    for expected in OUTCOMES:
        lines.append(f"{expected:>14}" + "".join(f"{confusion.get((expected, actual), 0):>13}" for actual in OUTCOMES))
    wrong = report.wrong
    lines.append(f"wrong verdicts: {len(wrong)}")
    for result in wrong:
        lines.append(
            f"  {result.case.case_id}: expected {result.case.expected}, got {result.actual} "
            f"({result.seconds * 1000:.0f} ms): {_one_line(result.reason)}"
            + (f" [note: {_one_line(result.case.note, 80)}]" if result.case.note else "")
        )
    # The first case of a family pays its start-up (child processes, containers): reported apart from the rest.
    first, rest = report.results[0], report.results[1:] or report.results[:1]
    times = [result.seconds for result in rest]
    slowest = sorted(rest, key=lambda result: result.seconds, reverse=True)[:5]
    lines.append(
        f"time per case: first (with start-up) {first.seconds * 1000:.0f} ms; the others mean "
        f"{statistics.fmean(times) * 1000:.1f} ms, median {statistics.median(times) * 1000:.1f} ms, max "
        f"{max(times) * 1000:.1f} ms; slowest: "
        + ", ".join(f"{result.case.case_id} {result.seconds * 1000:.0f} ms" for result in slowest)
    )
    if every_case:
        for result in report.results:
            lines.append(
                f"  {'ok   ' if result.correct else 'WRONG'} {result.case.case_id:<40} {result.actual:<11} "
                f"{result.seconds * 1000:8.1f} ms  {_one_line(result.reason, 100)}"
            )
    if report.implementations:
        pairs = sum(result.case.is_pair for result in report.results)
        for implementation in report.implementations:
            found = [d for d in report.disagreements if d.implementation == implementation]
            env_right = sum(d.env_outcome == d.case.expected for d in found)
            lines.append(
                f"differential: {implementation} disagrees with the env on {len(found)} of {pairs} pairs "
                f"(the label sides with the env on {env_right}, with {implementation} on "
                f"{sum(d.other_outcome == d.case.expected for d in found)})"
            )
            for d in found:
                lines.append(
                    f"  {d.case.case_id}: env {d.env_outcome}, {implementation} {d.other_outcome}, "
                    f"expected {d.case.expected}: {_one_line(d.case.gold or '', 40)} vs "
                    f"{_one_line(d.case.answer or '', 40)} ({_one_line(d.reason, 80)})"
                )
    elif report.differential:
        lines.append(f"differential: {report.env_id} has no second implementation to compare with")
    return "\n".join(lines)
