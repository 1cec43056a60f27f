"""Multi-digit +, -, * with worked, column-by-column solutions a tiny character-level model can learn.

Format (also the policy's pre-training corpus). The prompt is ``"<a><op><b>=?\\n"``; the completion is one short,
self-contained line per step, then ``Answer: <n>``. Each step line is a true equation followed by a space and the
running result so far, so the final answer is a copy of the last running result (no read-back across lines):

Addition, columns from the right: ``<da>+<db>+<carry in>=<two-digit sum> <digits so far>``; the sum's first digit
is the next column's carry, its second digit is prepended to the running digits::

    345+678=?          5+8+0=13 3
                       4+7+1=12 23
                       3+6+1=10 023
                       Answer: 1023

Subtraction, columns from the right: ``<da>-<db>-<borrow in>=<digit> <digits so far>``; when the column must borrow
the minuend digit is written with its borrowed ten (``15-8-0=7``), which tells the next column to subtract 1. A
negative result is announced first (``-(678-345)``) and the larger number minus the smaller one is worked::

    345-678=?          -(678-345)
                       8-5-0=3 3
                       7-4-0=3 33
                       6-3-0=3 333
                       Answer: -333

Multiplication, one line per digit of ``b`` from the right: ``<a>*<digit><zeros>=<partial product> <running sum>``::

    345*678=?          345*8=2760 2760
                       345*70=24150 26910
                       345*600=207000 233910
                       Answer: 233910

Leading zeros of the running digits are dropped in the answer (``1000-999`` works to ``0001``, answers ``1``).
The verifier reads the text after the last ``Answer:`` up to the end of that line and compares it exactly with the
canonical integer (no sign for non-negative results, no leading zeros, no separators); the chain of thought before
it is not judged. Difficulty is the number of digits of both operands (1 to 40).

The bare prompt is the contract with the tiny character-level policy (its pre-training corpus has no instructions).
For a general language model, ``instruct=True`` puts one line stating the answer format before the problem.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from verifarm.envs.base import Task, Verdict, check_completion_size

OPERATIONS = ("+", "-", "*")
ANSWER_MARKER = "Answer:"
# Everything a prompt or a worked solution can contain; the env's Text spaces use it.
CHARSET = "0123456789+-*=?() \nAnswer:"
MAX_DIGITS = 40
INSTRUCTION = "Work column by column, then end with the line 'Answer: <integer>'.\n"


def _add_lines(a: int, b: int) -> tuple[list[str], str]:
    da, db = str(a)[::-1], str(b)[::-1]
    width = max(len(da), len(db))
    carry, digits, lines = 0, "", []
    for i in range(width):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        total = x + y + carry
        digits = str(total % 10) + digits
        lines.append(f"{x}+{y}+{carry}={total:02d} {digits}")
        carry = total // 10
    return lines, (str(carry) + digits) if carry else digits


def _subtract_lines(a: int, b: int) -> tuple[list[str], str]:
    """Lines for a - b with a >= b >= 0."""
    da, db = str(a)[::-1], str(b)[::-1]
    borrow, digits, lines = 0, "", []
    for i in range(len(da)):
        x = int(da[i])
        y = int(db[i]) if i < len(db) else 0
        if x - y - borrow < 0:
            digit, shown, next_borrow = x + 10 - y - borrow, f"1{x}", 1
        else:
            digit, shown, next_borrow = x - y - borrow, str(x), 0
        digits = str(digit) + digits
        lines.append(f"{shown}-{y}-{borrow}={digit} {digits}")
        borrow = next_borrow
    return lines, digits


def _multiply_lines(a: int, b: int) -> tuple[list[str], str]:
    running, lines = 0, []
    for place, digit in enumerate(reversed(str(b))):
        factor = digit + "0" * place
        partial = a * int(factor)
        running += partial
        lines.append(f"{a}*{factor}={partial} {running}")
    return lines, str(running)


def worked_solution(a: int, b: int, op: str) -> str:
    """The reference completion for ``a op b`` (non-negative integers), ending with ``Answer: <n>\\n``."""
    if op not in OPERATIONS:
        raise ValueError(f"op must be one of {OPERATIONS}, got {op!r}")
    if a < 0 or b < 0:
        raise ValueError(f"operands must be non-negative integers, got {a} and {b}")
    if op == "+":
        lines, digits = _add_lines(a, b)
        sign = ""
    elif op == "-":
        if a >= b:
            lines, digits = _subtract_lines(a, b)
            sign = ""
        else:
            body, digits = _subtract_lines(b, a)
            lines, sign = [f"-({b}-{a})", *body], "-"
    else:
        lines, digits = _multiply_lines(a, b)
        sign = ""
    answer = int(digits)
    final = f"{sign}{answer}" if answer else "0"
    return "\n".join([*lines, f"{ANSWER_MARKER} {final}"]) + "\n"


def format_prompt(a: int, b: int, op: str) -> str:
    return f"{a}{op}{b}=?\n"


def exact_result(a: int, b: int, op: str) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"op must be one of {OPERATIONS}, got {op!r}")


def extract_answer(completion: str, marker: str = ANSWER_MARKER) -> str | None:
    """The text after the last ``marker`` up to the end of its line, stripped; None without a marker."""
    at = completion.rfind(marker)
    if at < 0:
        return None
    return completion[at + len(marker) :].split("\n", 1)[0].strip()


def score_integer_answer(completion: str, expected: int, verifier_version: str) -> Verdict:
    """Exact check of the canonical integer after the last ``Answer:``."""
    too_big = check_completion_size(completion)
    if too_big is not None:
        return too_big
    answer = extract_answer(completion)
    if answer is None:
        return Verdict(
            0.0, False, f"no '{ANSWER_MARKER}' line in the completion", {"verifier_version": verifier_version}
        )
    details = {"answer": answer[:64], "verifier_version": verifier_version}
    if answer == str(expected):
        return Verdict(1.0, True, "correct", details)
    body = answer[1:] if answer.startswith("-") else answer
    if not (body.isascii() and body.isdigit()):
        return Verdict(0.0, False, f"answer {answer[:32]!r} is not a plain integer", details)
    return Verdict(
        0.0,
        False,
        "wrong answer" if int(answer) != expected else f"answer {answer[:32]!r} is not in canonical form {expected}",
        details,
    )


@dataclass(frozen=True)
class ArithmeticFamily:
    """Random ``a op b`` with both operands of exactly ``difficulty`` digits (0-9 for one digit)."""

    operations: tuple[str, ...] = OPERATIONS
    instruct: bool = False  # prefix the prompt with INSTRUCTION (for policies that need to be told the format)
    name: str = "arithmetic"
    verifier_version: str = "arithmetic-1"
    min_difficulty: int = 1
    max_difficulty: int = MAX_DIGITS
    charset: str = CHARSET
    # Bounds for the Text spaces: prompt 2*40 digits + 4; completion of 40x40 multiplication is ~3.3k chars.
    max_prompt_chars: int = 2 * MAX_DIGITS + 8 + len(INSTRUCTION)
    max_completion_chars: int = 4096
    # Checking an answer costs microseconds, less than a round trip to the farm's shared verdict cache.
    cheap_verifier: ClassVar[bool] = True

    def __post_init__(self) -> None:
        ops = tuple(self.operations)
        if not ops or any(op not in OPERATIONS for op in ops) or len(set(ops)) != len(ops):
            raise ValueError(f"operations must be distinct members of {OPERATIONS}, got {self.operations!r}")
        object.__setattr__(self, "operations", ops)
        if self.instruct:
            object.__setattr__(self, "charset", "".join(sorted(set(CHARSET + INSTRUCTION))))

    def _draw_operand(self, rng: random.Random, digits: int) -> int:
        if digits == 1:
            return rng.randrange(10)
        return rng.randrange(10 ** (digits - 1), 10**digits)

    def generate(self, seed: int, difficulty: int) -> Task:
        if not self.min_difficulty <= difficulty <= self.max_difficulty:
            raise ValueError(
                f"difficulty (digits) must lie in [{self.min_difficulty}, {self.max_difficulty}], got {difficulty}"
            )
        rng = random.Random(f"{self.name}:{''.join(self.operations)}:{seed}:{difficulty}")
        op = rng.choice(self.operations)
        a, b = self._draw_operand(rng, difficulty), self._draw_operand(rng, difficulty)
        return Task(
            task_id=f"{self.name}[{''.join(self.operations)}]:d{difficulty}:s{seed}",
            prompt=(INSTRUCTION if self.instruct else "") + format_prompt(a, b, op),
            reference=worked_solution(a, b, op),
            difficulty=difficulty,
            data={"a": a, "b": b, "op": op, "answer": exact_result(a, b, op)},
        )

    def verify(self, task: Task, completion: str) -> Verdict:
        return score_integer_answer(completion, int(task.data["answer"]), self.verifier_version)
