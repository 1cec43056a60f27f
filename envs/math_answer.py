"""Generated math problems (fractions, decimals, percentages, linear equations, expressions, expansions) whose final
answer is checked for equivalence with math-verify, so ``1/2``, ``0.5`` and ``\\frac{1}{2}`` all count.

The completion ends with a line ``Answer: <answer>`` (LaTeX or plain math); the text after the last marker is
compared with the gold answer in a killable child process (see ``math_equivalence``). Difficulty 1 to 5 grows the
numbers, the number of terms and the depth of expressions. Each problem kind is one small generator:
``(rng, difficulty) -> (question, worked steps, gold answer in LaTeX)``.

Grading conventions (what "equal to the gold answer" means; ``math_normalization`` and ``math_equivalence`` apply
them, ``tests/audit/cases/math_pairs.jsonl`` holds labelled pairs for each):

- Presentation is ignored: spacing, ``$...$``, ``\\boxed{}``, ``\\left``/``\\right``, ``\\dfrac``, Unicode signs
  (``−``, ``∞``, ``°``, ``×``, ``≤``), thousands separators (``12,345``, ``12\\,345``, ``12{,}345``, ``12 345``), an
  ``x =`` in front of a value, scientific notation (``2.5e-4``, ``2.5\\times10^{-4}``), repeating decimals
  (``0.1\\overline{6}`` is 1/6), and the order of a sum or product (``2i+1`` is ``1+2i``).
- Values are exact: a decimal is the exact fraction it writes (``0.125`` is 1/8), so an approximation is unequal
  to the exact value (``0.3333333`` is not 1/3, ``3.14`` is not ``\\pi``). A number followed directly by
  ``e``/``E`` and an integer is scientific notation, never Euler's number. ``i`` is the imaginary unit
  (``e^{i\\pi} = -1``).
- Units: a unit, currency or percent sign may be omitted or added (``40``, ``40 euros`` and ``€40``
  are equal; ``30^\\circ`` = ``30``; ``25\\%`` = ``25``); two different units are unequal, even when they
  convert (``3 km`` is not ``3 m`` nor ``3000 m``; ``40 euros`` is not ``40 dollars``). A percent is a unit, not
  a factor: ``25\\%`` is not ``0.25``.
- Relations: an answer may assign the value to one symbol (``x = 3``), and a gold written as such an assignment
  is matched by its value alone; a relation between numbers (``4 = 3``, ``3 \\le 4``) or an equation of another
  shape (``2x = 6``) is not an answer to a value. An equation gold is matched by the same equation with its sides
  swapped or rearranged; an inequality and the interval it describes are equal (``x \\ge 3`` = ``[3, \\infty)``).
- Lists of solutions are sets: order and braces do not matter (``1, 2`` = ``\\{2, 1\\}``), a missing or extra
  solution is unequal; a single solution may be written as a one-element set.
- Intervals and tuples: brackets decide openness (``[1, 2)`` is not ``[1, 2]``); an open ``(a, b)`` is an
  interval or an ordered pair, never a list of solutions; an ordered pair's order matters.
- A gold answer that does not parse is an infra error naming the task, never a zero for every answer; so is any
  failure of the checker itself (a timeout, an exception, an import its lockdown prevented, output on its stderr).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

from verifarm.envs.arithmetic import extract_answer
from verifarm.envs.base import Task, Verdict, check_completion_size
from verifarm.envs.math_equivalence import MathEquivalenceChecker

ANSWER_MARKER = "Answer:"
MAX_ANSWER_CHARS = 500
PROMPT_HEADER = (
    "Solve the problem. Work step by step, then give the final answer alone on the last line as "
    "'Answer: <answer>' (a number, fraction or expression; LaTeX is fine).\n\nProblem: "
)

Generated = tuple[str, list[str], str]


def latex_fraction(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def plain_fraction(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _nonzero(rng: random.Random, low: int, high: int) -> int:
    value = 0
    while value == 0:
        value = rng.randint(low, high)
    return value


def fraction_problem(rng: random.Random, difficulty: int) -> Generated:
    top = 4 + 4 * difficulty
    x = Fraction(rng.randint(1, top), rng.randint(2, top))
    y = Fraction(rng.randint(1, top), rng.randint(2, top))
    op = rng.choice("+-*/")
    shown = {"+": "+", "-": "-", "*": "\\times", "/": "\\div"}[op]
    question = f"Compute ${latex_fraction(x)} {shown} {latex_fraction(y)}$ and simplify."
    if op in "+-":
        common = x.denominator * y.denominator // math.gcd(x.denominator, y.denominator)
        left, right = x.numerator * (common // x.denominator), y.numerator * (common // y.denominator)
        raw = left + right if op == "+" else left - right
        value = Fraction(raw, common)
        steps = [f"Common denominator {common}: {left}/{common} {op} {right}/{common} = {raw}/{common}."]
    elif op == "*":
        value = x * y
        steps = [
            f"Multiply: ({plain_fraction(x)})*({plain_fraction(y)}) = "
            f"{x.numerator * y.numerator}/{x.denominator * y.denominator}."
        ]
    else:
        value = x / y
        steps = [f"Divide by multiplying with the reciprocal: ({plain_fraction(x)})*({y.denominator}/{y.numerator})."]
    steps.append(f"Simplified: {plain_fraction(value)}.")
    return question, steps, latex_fraction(value)


def decimal_problem(rng: random.Random, difficulty: int) -> Generated:
    places = difficulty
    scale = 10**places
    x = Decimal(rng.randint(1, 100 * scale)) / scale
    y = Decimal(rng.randint(1, 100 * scale)) / scale
    op = rng.choice("+-*")
    value = {"+": x + y, "-": x - y, "*": x * y}[op]
    question = f"Compute {x} {op} {y} exactly."
    steps = [f"{x} {op} {y} = {value}."]
    return question, steps, format(value.normalize(), "f")


def percent_problem(rng: random.Random, difficulty: int) -> Generated:
    percent = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 50, 75, 120, 150]) if difficulty < 3 else rng.randint(1, 199)
    base = rng.randint(2, 10 ** (difficulty + 1))
    value = Fraction(percent * base, 100)
    question = f"What is {percent}% of {base}?"
    steps = [f"{percent}% of {base} = {percent}*{base}/100 = {percent * base}/100 = {plain_fraction(value)}."]
    return question, steps, latex_fraction(value)


def linear_equation_problem(rng: random.Random, difficulty: int) -> Generated:
    top = 3 + 4 * difficulty
    a, c = _nonzero(rng, -top, top), _nonzero(rng, -top, top)
    while c == a:
        c = _nonzero(rng, -top, top)
    b, d = rng.randint(-top * 3, top * 3), rng.randint(-top * 3, top * 3)
    value = Fraction(d - b, a - c)
    question = f"Solve for $x$: ${_linear(a, b)} = {_linear(c, d)}$."
    steps = [
        f"Collect x on the left: ({a}-({c}))x = {d}-({b}), so {a - c}x = {d - b}.",
        f"x = {d - b}/{a - c} = {plain_fraction(value)}.",
    ]
    return question, steps, latex_fraction(value)


def _linear(a: int, b: int) -> str:
    coefficient = {1: "", -1: "-"}.get(a, str(a))
    return f"{coefficient}x" + (f" + {b}" if b > 0 else f" - {-b}" if b < 0 else "")


def _expression(rng: random.Random, depth: int, steps: list[str]) -> tuple[str, Fraction]:
    """A random expression tree as text and value; ``steps`` gets one line per operation, innermost first."""
    if depth == 0:
        number = rng.randint(1, 12)
        return str(number), Fraction(number)
    left_text, left = _expression(rng, depth - 1 if rng.random() < 0.8 else 0, steps)
    right_text, right = _expression(rng, depth - 1 if rng.random() < 0.5 else 0, steps)
    op = rng.choice("+-*/") if right != 0 else rng.choice("+-*")
    value = {"+": left + right, "-": left - right, "*": left * right, "/": left / right if right else left}[op]
    steps.append(f"{_operand(left)} {op} {_operand(right)} = {plain_fraction(value)}")
    return f"({left_text} {op} {right_text})", value


def _operand(value: Fraction) -> str:
    text = plain_fraction(value)
    return f"({text})" if value < 0 or value.denominator != 1 else text


def expression_problem(rng: random.Random, difficulty: int) -> Generated:
    steps: list[str] = []
    text, value = _expression(rng, min(difficulty, 4), steps)
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    question = f"Evaluate {text} exactly (as an integer or a simplified fraction)."
    return question, [*steps, f"So the value is {plain_fraction(value)}."], latex_fraction(value)


def expansion_problem(rng: random.Random, difficulty: int) -> Generated:
    top = 2 + 2 * difficulty
    factors = [(_nonzero(rng, 1, 1 + difficulty // 2), _nonzero(rng, -top, top)) for _ in range(2 + (difficulty >= 4))]
    coefficients = [1]  # lowest degree first
    for slope, intercept in factors:
        shifted = [0, *coefficients]
        scaled = [intercept * c for c in coefficients] + [0]
        coefficients = [s * slope + t for s, t in zip(shifted, scaled)]
    product = "".join(f"({_linear(slope, intercept)})" for slope, intercept in factors)
    expanded = _polynomial(coefficients)
    question = f"Expand ${product}$ into a polynomial in $x$."
    steps = ["Multiply the factors term by term and collect powers of x.", f"{product} = {expanded}."]
    return question, steps, expanded


def _polynomial(coefficients: list[int]) -> str:
    terms = []
    for power in range(len(coefficients) - 1, -1, -1):
        c = coefficients[power]
        if c == 0:
            continue
        body = "" if power == 0 else "x" if power == 1 else f"x^{{{power}}}"
        magnitude = str(abs(c)) if abs(c) != 1 or power == 0 else ""
        sign = "-" if c < 0 else "+"
        terms.append((sign, magnitude + body))
    if not terms:
        return "0"
    first_sign, first = terms[0]
    return ("-" if first_sign == "-" else "") + first + "".join(f" {sign} {term}" for sign, term in terms[1:])


PROBLEM_KINDS: dict[str, Callable[[random.Random, int], Generated]] = {
    "fraction": fraction_problem,
    "decimal": decimal_problem,
    "percent": percent_problem,
    "linear": linear_equation_problem,
    "expression": expression_problem,
    "expansion": expansion_problem,
}


class MathAnswerFamily:
    """Problems of the chosen ``kinds``; one math-verify child process per family (``close()`` stops it)."""

    name = "math_answer"
    # Bumped whenever a verdict may change (math-answer-2: the lockdown-safe checker and the conventions above).
    verifier_version = "math-answer-2"
    min_difficulty = 1
    max_difficulty = 5
    max_prompt_chars = 1024
    max_completion_chars = 4096

    def __init__(self, kinds: tuple[str, ...] | list[str] = tuple(PROBLEM_KINDS), timeout_seconds: int = 5) -> None:
        kinds = tuple(kinds)
        unknown = [kind for kind in kinds if kind not in PROBLEM_KINDS]
        if not kinds or unknown:
            raise ValueError(f"kinds must be a non-empty subset of {sorted(PROBLEM_KINDS)}, got {kinds!r}")
        self.kinds = kinds
        self.checker = MathEquivalenceChecker(timeout_seconds=timeout_seconds)

    def generate(self, seed: int, difficulty: int) -> Task:
        if not self.min_difficulty <= difficulty <= self.max_difficulty:
            raise ValueError(f"difficulty must lie in [{self.min_difficulty}, {self.max_difficulty}], got {difficulty}")
        rng = random.Random(f"{self.name}:{','.join(self.kinds)}:{seed}:{difficulty}")
        kind = rng.choice(self.kinds)
        question, steps, gold = PROBLEM_KINDS[kind](rng, difficulty)
        return Task(
            task_id=f"{self.name}[{kind}]:d{difficulty}:s{seed}",
            prompt=f"{PROMPT_HEADER}{question}\n",
            reference="\n".join([*steps, f"{ANSWER_MARKER} {gold}"]) + "\n",
            difficulty=difficulty,
            data={"kind": kind, "answer": gold},
        )

    def task_from_gold(self, gold: str, task_id: str = "gold", question: str = "(given gold answer)") -> Task:
        """A task whose gold answer is ``gold`` (LaTeX), for scoring hand-written answer pairs through ``verify``."""
        if not isinstance(gold, str) or not gold.strip():
            raise ValueError(f"gold must be a non-empty LaTeX answer, got {gold!r}")
        return Task(
            task_id=f"{self.name}[gold]:{task_id}",
            prompt=f"{PROMPT_HEADER}{question}\n",
            reference=f"{ANSWER_MARKER} {gold}\n",
            difficulty=self.min_difficulty,
            data={"kind": "gold", "answer": gold},
        )

    @staticmethod
    def completion_for(answer: str) -> str:
        """A completion that gives ``answer`` in this env's answer format."""
        return f"{ANSWER_MARKER} {answer}\n"

    def verify(self, task: Task, completion: str) -> Verdict:
        too_big = check_completion_size(completion, self.max_completion_chars * 4)
        if too_big is not None:
            return too_big
        details = {"verifier_version": self.verifier_version}
        answer = extract_answer(completion, ANSWER_MARKER)
        if answer is None:
            return Verdict(0.0, False, f"no '{ANSWER_MARKER}' line in the completion", details)
        details["answer"] = answer[:100]
        if not answer:
            return Verdict(0.0, False, f"nothing after '{ANSWER_MARKER}'", details)
        if len(answer) > MAX_ANSWER_CHARS:
            return Verdict(0.0, False, f"answer too long ({len(answer)} chars > {MAX_ANSWER_CHARS})", details)
        gold = str(task.data["answer"])
        if answer == gold:
            return Verdict(1.0, True, "correct (identical to the gold answer)", details)
        result = self.checker.check(gold, answer)
        details["equivalence"] = result.detail
        if result.infra_error:
            return Verdict(
                0.0, False, f"checker failed on task {task.task_id}: {result.detail}"[:400], details, infra_error=True
            )
        if result.equivalent:
            return Verdict(1.0, True, "correct (equivalent to the gold answer)", details)
        return Verdict(0.0, False, f"wrong answer (not equivalent to the gold answer: {result.detail[:120]})", details)

    def close(self) -> None:
        self.checker.close()
