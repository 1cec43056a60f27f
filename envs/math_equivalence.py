"""Answer equivalence with math-verify, run in a hardened child process so it works from any thread and can be killed.

math-verify's own timeout uses ``signal.alarm``, which only works in a main thread; a hostile answer such as
``9^{9^{9^9}}`` spends its time inside C code where no signal handler runs; and plain-text answers go through
sympy's ``parse_expr``, which evaluates code. So every check goes to a ``ScoringProcess`` child (see
``scoring_process``: de-privileged, memory-capped, killed and replaced when it misses the wall deadline) whose main
thread also uses math-verify's own timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass

from verifarm.envs.scoring_process import ScoringProcess


@dataclass(frozen=True)
class Equivalence:
    equivalent: bool
    timed_out: bool = False
    infra_error: bool = False
    detail: str = ""


class MathEquivalenceChecker:
    """Thread-safe; one child process per checker, started on first use, stopped by ``close()``."""

    def __init__(self, timeout_seconds: int = 5) -> None:
        if not isinstance(timeout_seconds, int) or timeout_seconds < 1:
            raise ValueError(f"timeout_seconds must be a positive integer (math-verify uses whole seconds), "
                             f"got {timeout_seconds!r}")
        self.timeout_seconds = timeout_seconds
        self._process = ScoringProcess("verifarm.envs.math_equivalence:math_verify_handler",
                                       {"timeout_seconds": timeout_seconds})

    def check(self, gold: str, answer: str) -> Equivalence:
        """Whether ``answer`` (LaTeX or plain math) equals ``gold``."""
        # Gold and answer are parsed and then compared, each step under math-verify's own timeout.
        reply = self._process.call({"gold": gold, "answer": answer}, 3 * self.timeout_seconds + 2.0)
        if reply.status == "timeout":
            return Equivalence(False, timed_out=True, detail="equivalence check timed out")
        if reply.status != "ok":
            return Equivalence(False, infra_error=True, detail=str(reply.body.get("error", ""))[:200])
        body = reply.body
        if "gold_error" in body:  # our generator's fault, never the completion's
            return Equivalence(False, infra_error=True, detail=str(body["gold_error"]))
        if "error" in body:
            return Equivalence(False, detail=str(body["error"])[:200])
        return Equivalence(bool(body.get("equivalent")), detail=str(body.get("parsed", ""))[:200])

    def close(self) -> None:
        self._process.close()


def _parse(text: str, timeout: int) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    # Answers are a line of math: read as LaTeX first ("2x+1" as an expression, not "2"), then as plain text.
    parsed = parse(f"${text}$", extraction_config=config, parsing_timeout=timeout)
    return parsed or parse(text, extraction_config=config, parsing_timeout=timeout)


def _is_answer_form(value: object) -> bool:
    """A value, or an assignment to one symbol (``x = 3``); ``4 = 3`` or ``x < 4`` are not answers.

    math-verify compares only the right side of an equation, so without this ``anything = gold`` would pass.
    """
    from sympy import Symbol
    from sympy.core.relational import Equality, Relational

    if isinstance(value, Relational):
        return isinstance(value, Equality) and isinstance(value.lhs, Symbol)
    return True


def math_verify_handler(timeout_seconds: int):
    """Runs in the child: import and warm up math-verify (before hardening), return the request handler."""
    from math_verify import verify

    for gold, answer in (("\\frac{1}{2}", "0.5"), ("x^{2} - 1", "(x-1)(x+1)"), ("3", "x = 3"), ("2", "2 \\le 3")):
        verify(_parse(gold, timeout_seconds), _parse(answer, timeout_seconds), timeout_seconds=timeout_seconds)

    def handle(request: dict) -> dict:
        gold = _parse(str(request["gold"]), timeout_seconds)
        answer = _parse(str(request["answer"]), timeout_seconds)
        if not gold:
            return {"gold_error": "the gold answer did not parse"}
        if not answer:
            return {"equivalent": False, "parsed": "answer did not parse"}
        if not _is_answer_form(answer[0]):
            return {"equivalent": False, "parsed": f"{answer[-1]} is a relation, not a value"}
        return {"equivalent": bool(verify(gold, answer, timeout_seconds=timeout_seconds)),
                "parsed": f"{gold[-1]} vs {answer[-1]}"}

    return handle
