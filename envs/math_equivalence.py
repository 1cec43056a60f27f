"""Answer equivalence under the MathAnswer grading conventions, run in a locked-down child process that can be killed.

math-verify's own timeout uses ``signal.alarm``, which only works in a main thread; a hostile answer such as
``9^{9^{9^9}}`` spends its time inside C code where no signal handler runs; and plain-text answers go through
sympy's ``parse_expr``, which evaluates code. So every check goes to a ``ScoringProcess`` child (see
``scoring_process``: de-privileged, memory-capped, chrooted to an empty folder, killed and replaced when it misses
the wall deadline) whose main thread also uses math-verify's own timeouts.

In the chroot no module file can be read, yet sympy imports many modules on first use and math-verify swallows the
``ImportError`` (a truncated parse, a wrong verdict). So the scoring process imports every package the check can
reach before it locks itself down (``scoring_process.LAZY_PACKAGES``), reports any import still attempted after the
lockdown as a checker failure, and the checker turns every failure of its own (an import, a timeout, an exception,
anything on the child's stderr, a dead child, a gold answer that does not parse) into an infra error with the
reason, never into a verdict.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from verifarm.envs.math_normalization import normalize_answer
from verifarm.envs.scoring_process import ScoringProcess

WARM_UP_PAIRS = (
    ("\\frac{1}{2}", "0.5"),
    ("x^{2} - 1", "(x-1)(x+1)"),
    ("3", "x = 3"),
    ("2", "2 \\le 3"),
    ("[3, \\infty)", "x \\ge 3"),
    ("\\{1, 2\\}", "2, 1"),
    ("y = 2x + 1", "2x + 1 = y"),
    ("-1", "e^{i\\pi}"),
)


@dataclass(frozen=True)
class Equivalence:
    equivalent: bool
    timed_out: bool = False
    infra_error: bool = False
    detail: str = ""


class MathEquivalenceChecker:
    """Thread-safe; one child process per checker, started on first use, stopped by ``close()``.

    ``implementation`` picks the handler the child runs: ``"verifarm"`` (the conventions, the default), or a second
    implementation for differential audits: ``"math-verify"`` (math-verify alone, its defaults) and ``"sympy"``
    (latex2sympy and ``sympy.simplify`` alone).
    """

    def __init__(self, timeout_seconds: int = 5, implementation: str = "verifarm") -> None:
        if not isinstance(timeout_seconds, int) or timeout_seconds < 1:
            raise ValueError(
                f"timeout_seconds must be a positive integer (math-verify uses whole seconds), got {timeout_seconds!r}"
            )
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {sorted(IMPLEMENTATIONS)}, got {implementation!r}")
        self.timeout_seconds = timeout_seconds
        self.implementation = implementation
        self._process = ScoringProcess(
            f"verifarm.envs.math_equivalence:{IMPLEMENTATIONS[implementation]}", {"timeout_seconds": timeout_seconds}
        )

    def check(self, gold: str, answer: str) -> Equivalence:
        """Whether ``answer`` (LaTeX or plain math) equals ``gold``; an infra error when the checker itself failed."""
        # Gold and answer are parsed and then compared, each step under math-verify's own timeout.
        wall_seconds = 3 * self.timeout_seconds + 2.0
        reply = self._process.call({"gold": gold, "answer": answer}, wall_seconds)
        trouble = f"; checker stderr: {reply.stderr.strip()[-300:]}" if reply.stderr.strip() else ""
        if reply.status == "timeout":
            return Equivalence(
                False,
                timed_out=True,
                infra_error=True,
                detail=f"equivalence check missed its {wall_seconds:.0f} s deadline (child killed)" + trouble,
            )
        if reply.status != "ok":
            return Equivalence(
                False, infra_error=True, detail=f"checker failed: {reply.body.get('error', '')}" + trouble
            )
        body = reply.body
        if trouble:  # the child printed something: a library in trouble, whatever verdict it reached
            return Equivalence(False, infra_error=True, detail=f"checker wrote to stderr{trouble}")
        if "timeout" in body:
            return Equivalence(False, timed_out=True, infra_error=True, detail=str(body["timeout"])[:300])
        if "gold_error" in body:  # our task's fault, never the completion's
            return Equivalence(False, infra_error=True, detail=str(body["gold_error"])[:300])
        if "error" in body:  # an exception escaped the handler: a checker bug, not a property of the answer
            return Equivalence(False, infra_error=True, detail=f"checker raised {str(body['error'])[:300]}")
        return Equivalence(bool(body.get("equivalent")), detail=str(body.get("parsed", ""))[:300])

    def close(self) -> None:
        self._process.close()


# A lone number, as most gold answers and many answers are: read exactly without the LaTeX grammar (whose parse
# costs milliseconds), with the value math-verify would give it.
_PLAIN_INTEGER = re.compile(r"[+-]?\d+")
_PLAIN_FRACTION = re.compile(r"(-?)\s*\\[dt]?frac\{\s*(\d+)\s*\}\{\s*([1-9]\d*)\s*\}")


def _plain_number(text: str) -> Any:
    from sympy import Integer, Rational

    text = text.strip()
    if len(text) > 40:  # a long digit string is not worth special-casing
        return None
    if _PLAIN_INTEGER.fullmatch(text):
        return Integer(int(text))
    fraction = _PLAIN_FRACTION.fullmatch(text)
    if fraction:
        sign = -1 if fraction.group(1) else 1
        return sign * Rational(int(fraction.group(2)), int(fraction.group(3)))
    return None


def _parse(text: str, timeout: int) -> list:
    """math-verify's parse of one line of math, sympy objects only (its fallback string is dropped)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    number = _plain_number(text)
    if number is not None:
        return [number]
    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    # Answers are a line of math: read as LaTeX first ("2x+1" as an expression, not "2"), then as plain text.
    parsed = [
        item
        for item in parse(f"${text}$", extraction_config=config, parsing_timeout=timeout)
        if not isinstance(item, str)
    ]
    if not parsed:
        parsed = [
            item for item in parse(text, extraction_config=config, parsing_timeout=timeout) if not isinstance(item, str)
        ]
    return [_imaginary_unit(item) for item in parsed]


def _imaginary_unit(value: Any) -> Any:
    """``i`` is the imaginary unit (latex2sympy reads it as a symbol), so ``e^{i\\pi}`` is -1."""
    from sympy import I, Symbol

    try:
        names = {symbol for symbol in value.free_symbols if isinstance(symbol, Symbol) and symbol.name == "i"}
        return value.xreplace(dict.fromkeys(names, I)) if names else value
    except (AttributeError, TypeError):
        return value


def _is_relation(value: Any) -> bool:
    from sympy import And
    from sympy.core.relational import Relational

    return isinstance(value, Relational) or (
        isinstance(value, And) and all(isinstance(arg, Relational) for arg in value.args)
    )


def form_problem(gold: Any, answer: Any) -> str | None:
    """Why ``answer`` cannot be an answer to ``gold`` by its form alone, or None.

    math-verify compares only the right side of an equation (``anything = gold`` would pass), turns a relation into
    a set and accepts a pair for a list; the conventions allow a relation only as an assignment to one symbol
    (``x = 3``), against a gold relation (sides may be swapped), or as an inequality against a gold interval.
    """
    from sympy import Interval, Set, Symbol, Tuple
    from sympy.core.relational import Equality
    from sympy.sets.sets import FiniteSet

    if _is_relation(answer):
        if not answer.free_symbols:
            return f"{answer} relates numbers, it is not an answer"
        if _is_relation(gold):
            return None
        if isinstance(gold, Set) and not isinstance(answer, Equality) and len(answer.free_symbols) == 1:
            return None
        if isinstance(answer, Equality) and isinstance(answer.lhs, Symbol):
            return None
        return f"{answer} is a relation, not a value"

    def several(value: Any) -> bool:  # a list of solutions
        return isinstance(value, FiniteSet) and len(value) > 1

    def pair(value: Any) -> bool:  # latex2sympy reads (a, b) as an open interval, or as a tuple when a >= b
        return isinstance(value, (Interval, Tuple))

    if (several(gold) and pair(answer)) or (pair(gold) and several(answer)):
        return "a list of solutions is a set; a bracketed pair is an interval or an ordered pair"
    return None


class _LogCapture(logging.Handler):
    """Collects math-verify's and latex2sympy's log records (they log the errors they swallow) for one request."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def timeouts(self) -> list[str]:
        return [record.getMessage()[:120] for record in self.records if "Timeout" in record.getMessage()]

    def comparison_errors(self) -> list[str]:
        """Exceptions math-verify caught while comparing (it then answers False, whatever the truth)."""
        return [
            f"{type(record.exc_info[1]).__name__}: {str(record.exc_info[1])[:120]}"
            for record in self.records
            if record.exc_info and record.exc_info[1] is not None and "comparison" in record.getMessage()
        ]


def _capture_library_logs() -> _LogCapture:
    capture = _LogCapture()
    for name in ("math_verify", "latex2sympy2_extended"):
        logger = logging.getLogger(name)
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return capture


def judge(gold_text: str, answer_text: str, timeout_seconds: int) -> dict[str, Any]:
    """The conventions' verdict on one pair, as the child's reply: ``equivalent`` and ``parsed`` (what was compared),
    or ``gold_error`` when the gold itself does not parse. Pure apart from math-verify's alarm-based timeouts."""
    from math_verify import verify

    gold_form, answer_form = normalize_answer(gold_text), normalize_answer(answer_text)
    gold = _parse(gold_form.latex, timeout_seconds)
    if not gold:
        return {"gold_error": f"the gold answer {gold_text!r} did not parse"}
    answer = _parse(answer_form.latex, timeout_seconds)
    if not answer:
        return {"equivalent": False, "parsed": "the answer did not parse"}
    if gold_form.unit and answer_form.unit and gold_form.unit != answer_form.unit:
        return {"equivalent": False, "parsed": f"different units: {gold_form.unit} vs {answer_form.unit}"}
    problem = form_problem(gold[0], answer[0])
    if problem:
        return {"equivalent": False, "parsed": problem}
    equivalent = verify(gold, answer, timeout_seconds=timeout_seconds, allow_set_relation_comp=True)
    return {"equivalent": bool(equivalent), "parsed": f"{gold[0]} vs {answer[0]}"[:300]}


def _judge_math_verify_alone(gold_text: str, answer_text: str, timeout_seconds: int) -> dict[str, Any]:
    from math_verify import parse, verify

    gold = parse(f"${gold_text}$", parsing_timeout=timeout_seconds)
    answer = parse(f"${answer_text}$", parsing_timeout=timeout_seconds)
    if not gold:
        return {"gold_error": f"the gold answer {gold_text!r} did not parse"}
    return {
        "equivalent": bool(verify(gold, answer, timeout_seconds=timeout_seconds)),
        "parsed": f"{gold[0]} vs {answer[0] if answer else 'nothing'}"[:300],
    }


def _judge_sympy_alone(gold_text: str, answer_text: str, timeout_seconds: int) -> dict[str, Any]:
    from latex2sympy2_extended import latex2sympy
    from sympy import Expr, simplify

    try:
        gold = latex2sympy(gold_text)
    except Exception as error:
        return {"gold_error": f"the gold answer {gold_text!r} did not parse: {type(error).__name__}"}
    try:
        answer = latex2sympy(answer_text)
    except Exception as error:
        return {"equivalent": False, "parsed": f"the answer did not parse: {type(error).__name__}"}
    if isinstance(gold, Expr) and isinstance(answer, Expr):
        equivalent = gold == answer or simplify(gold - answer) == 0
    else:
        equivalent = gold == answer
    return {"equivalent": bool(equivalent), "parsed": f"{gold} vs {answer}"[:300]}


def _handler(judge_pair: Callable[[str, str, int], dict[str, Any]], timeout_seconds: int):
    capture = _capture_library_logs()
    for gold, answer in WARM_UP_PAIRS:
        judge_pair(gold, answer, timeout_seconds)

    def handle(request: dict) -> dict:
        capture.records.clear()
        reply = judge_pair(str(request["gold"]), str(request["answer"]), timeout_seconds)
        timeouts = capture.timeouts()
        if timeouts:  # math-verify returns "no parse" or False on its own timeouts: not a verdict
            return {"timeout": f"math-verify timed out ({timeouts[0]})"}
        errors = capture.comparison_errors()
        if errors and not reply.get("equivalent"):  # a False that an exception decided is not a verdict
            return {"error": f"math-verify swallowed {errors[0]}"}
        return reply

    return handle


def math_verify_handler(timeout_seconds: int):
    """Runs in the child before its lockdown (when ``serve`` also pre-imports sympy's lazily loaded packages): warm
    up, return the request handler."""
    return _handler(judge, timeout_seconds)


def math_verify_alone_handler(timeout_seconds: int):
    return _handler(_judge_math_verify_alone, timeout_seconds)


def sympy_alone_handler(timeout_seconds: int):
    return _handler(_judge_sympy_alone, timeout_seconds)


IMPLEMENTATIONS = {
    "verifarm": "math_verify_handler",
    "math-verify": "math_verify_alone_handler",
    "sympy": "sympy_alone_handler",
}
