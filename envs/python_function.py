"""Procedurally generated small Python function tasks with hidden tests, checked in the sandbox.

Each template is a signature, a docstring and a reference body with a few drawn parameters (a shift, a modulus, a
chunk size...), plus an input generator. The hidden tests' expected values come from running the reference body
here, in the trusted parent, on inputs drawn from the task's seed; the candidate only ever runs in the sandbox.
Difficulty 1-2 uses one-liners, 3-4 loops, 5 small algorithms; larger difficulty also means larger inputs and more
hidden tests. The completion is the function body (continuing the prompt) or the function in a fenced code block.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from verifarm.envs.base import Task, Verdict
from verifarm.envs.code_completion import PYTHON_INSTRUCTION, verify_python_task


def _ints(rng: random.Random, size: int, low: int = -50, high: int = 50) -> list[int]:
    return [rng.randint(low, high) for _ in range(size)]


def _word(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(size))


@dataclass(frozen=True)
class FunctionTemplate:
    name: str
    tier: int  # 1 one-liner, 2 loop, 3 small algorithm
    signature: str  # formatted with the drawn parameters
    doc: str
    body: str
    draw_params: Callable[[random.Random], dict[str, Any]]
    draw_args: Callable[[random.Random, int, dict[str, Any]], tuple]  # (rng, size, params) -> arguments


TEMPLATES: tuple[FunctionTemplate, ...] = (
    FunctionTemplate(
        "scaled_sum",
        1,
        "def scaled_sum(numbers: list[int]) -> int:",
        "Return the sum of the numbers, each multiplied by {k}.",
        "    return sum(x * {k} for x in numbers)\n",
        lambda r: {"k": r.randint(2, 9)},
        lambda r, n, p: (_ints(r, n),),
    ),
    FunctionTemplate(
        "count_divisible",
        1,
        "def count_divisible(numbers: list[int]) -> int:",
        "Return how many of the numbers are divisible by {k}.",
        "    return sum(1 for x in numbers if x % {k} == 0)\n",
        lambda r: {"k": r.randint(2, 7)},
        lambda r, n, p: (_ints(r, n),),
    ),
    FunctionTemplate(
        "clamp_all",
        1,
        "def clamp_all(numbers: list[int]) -> list[int]:",
        "Return the numbers with every value below {lo} raised to {lo} and every value above {hi} lowered to {hi}.",
        "    return [min(max(x, {lo}), {hi}) for x in numbers]\n",
        lambda r: {"lo": r.randint(-20, 0), "hi": r.randint(1, 20)},
        lambda r, n, p: (_ints(r, n),),
    ),
    FunctionTemplate(
        "rotate_right",
        1,
        "def rotate_right(items: list[int]) -> list[int]:",
        "Return the list rotated right by {k} places (the last {k} items move to the front, wrapping around\n"
        "    for short lists); an empty list stays empty.",
        "    if not items:\n        return []\n    shift = {k} % len(items)\n"
        "    return items[len(items) - shift:] + items[:len(items) - shift]\n",
        lambda r: {"k": r.randint(1, 6)},
        lambda r, n, p: (_ints(r, r.randint(0, n)),),
    ),
    FunctionTemplate(
        "second_largest",
        1,
        "def second_largest(numbers: list[int]) -> int | None:",
        "Return the second largest distinct value, or None when there are fewer than two distinct values.",
        "    distinct = sorted(set(numbers))\n    return distinct[-2] if len(distinct) >= 2 else None\n",
        lambda r: {},
        lambda r, n, p: (_ints(r, r.randint(0, n), -5, 5),),
    ),
    FunctionTemplate(
        "keep_long_words",
        1,
        "def keep_long_words(text: str) -> list[str]:",
        "Return the space-separated words of text that have at least {k} letters, in order.",
        "    return [word for word in text.split() if len(word) >= {k}]\n",
        lambda r: {"k": r.randint(3, 6)},
        lambda r, n, p: (" ".join(_word(r, r.randint(1, 8)) for _ in range(n)),),
    ),
    FunctionTemplate(
        "running_max",
        2,
        "def running_max(numbers: list[int]) -> list[int]:",
        "Return a list whose i-th value is the largest of numbers[0..i].",
        "    result = []\n    for x in numbers:\n        result.append(x if not result else max(result[-1], x))\n"
        "    return result\n",
        lambda r: {},
        lambda r, n, p: (_ints(r, n),),
    ),
    FunctionTemplate(
        "dedupe",
        2,
        "def dedupe(items: list[int]) -> list[int]:",
        "Return the items without repeats, keeping the first occurrence of each value, in order.",
        "    seen = set()\n    result = []\n    for x in items:\n        if x not in seen:\n"
        "            seen.add(x)\n            result.append(x)\n    return result\n",
        lambda r: {},
        lambda r, n, p: (_ints(r, n, 0, 9),),
    ),
    FunctionTemplate(
        "shift_letters",
        2,
        "def shift_letters(text: str) -> str:",
        "Shift every lowercase letter {k} places forward in the alphabet, wrapping from z to a;\n"
        "    leave every other character unchanged.",
        "    return ''.join(chr((ord(c) - 97 + {k}) % 26 + 97) if 'a' <= c <= 'z' else c for c in text)\n",
        lambda r: {"k": r.randint(1, 25)},
        lambda r, n, p: (
            " ".join(_word(r, r.randint(1, 6)) for _ in range(max(1, n // 2))) + r.choice(["", "!", "."]),
        ),
    ),
    FunctionTemplate(
        "chunk_sums",
        2,
        "def chunk_sums(numbers: list[int]) -> list[int]:",
        "Split numbers into consecutive chunks of {k} (the last one may be shorter) and return each chunk's sum.",
        "    return [sum(numbers[i:i + {k}]) for i in range(0, len(numbers), {k})]\n",
        lambda r: {"k": r.randint(2, 5)},
        lambda r, n, p: (_ints(r, n),),
    ),
    FunctionTemplate(
        "digit_power_sum",
        2,
        "def digit_power_sum(n: int) -> int:",
        "Return the sum of the decimal digits of the non-negative integer n, each raised to the power {k}.",
        "    return sum(int(d) ** {k} for d in str(n))\n",
        lambda r: {"k": r.randint(1, 4)},
        lambda r, n, p: (r.randint(0, 10 ** r.randint(1, n)),),
    ),
    FunctionTemplate(
        "to_base",
        2,
        "def to_base(n: int) -> str:",
        "Return the non-negative integer n written in base {k} (digits only, no prefix).",
        "    if n == 0:\n        return '0'\n    digits = ''\n    while n:\n        digits = str(n % {k}) + digits\n"
        "        n //= {k}\n    return digits\n",
        lambda r: {"k": r.randint(2, 9)},
        lambda r, n, p: (r.randint(0, 10 ** r.randint(1, n)),),
    ),
    FunctionTemplate(
        "longest_run",
        2,
        "def longest_run(numbers: list[int]) -> int:",
        "Return the length of the longest stretch of equal adjacent values (0 for an empty list).",
        "    best = run = 0\n    for i, x in enumerate(numbers):\n"
        "        run = run + 1 if i and numbers[i - 1] == x else 1\n        best = max(best, run)\n    return best\n",
        lambda r: {},
        lambda r, n, p: (_ints(r, r.randint(0, n), 0, 2),),
    ),
    FunctionTemplate(
        "run_length",
        3,
        "def run_length(text: str) -> str:",
        "Encode text as runs: each maximal run of one character becomes the character followed by the run\n"
        "    length, e.g. 'aaab' -> 'a3b1'.",
        "    out = []\n    i = 0\n    while i < len(text):\n        j = i\n"
        "        while j < len(text) and text[j] == text[i]:\n            j += 1\n"
        "        out.append(text[i] + str(j - i))\n        i = j\n    return ''.join(out)\n",
        lambda r: {},
        lambda r, n, p: ("".join(r.choice("ab") * r.randint(1, 4) for _ in range(n)),),
    ),
    FunctionTemplate(
        "is_balanced",
        3,
        "def is_balanced(text: str) -> bool:",
        "Return True when the brackets ()[]{{}} in text are balanced and properly nested; ignore other characters.",
        "    pairs = {{')': '(', ']': '[', '}}': '{{'}}\n    stack = []\n    for c in text:\n"
        "        if c in '([{{':\n            stack.append(c)\n        elif c in pairs:\n"
        "            if not stack or stack.pop() != pairs[c]:\n                return False\n"
        "    return not stack\n",
        lambda r: {},
        lambda r, n, p: (
            "".join(r.choice("()[]{}x") for _ in range(r.randint(0, n))) if r.random() < 0.5 else _balanced(r, n),
        ),
    ),
    FunctionTemplate(
        "recurrence",
        3,
        "def recurrence(n: int) -> int:",
        "Return a(n) for a(0) = {a}, a(1) = {b} and a(i) = a(i-1) + {c} * a(i-2), modulo 1000003.",
        "    x, y = {a} % 1000003, {b} % 1000003\n    for _ in range(n):\n"
        "        x, y = y, (y + {c} * x) % 1000003\n    return x\n",
        lambda r: {"a": r.randint(0, 5), "b": r.randint(1, 5), "c": r.randint(1, 4)},
        lambda r, n, p: (r.randint(0, 10 * n),),
    ),
    FunctionTemplate(
        "pairs_with_sum",
        3,
        "def pairs_with_sum(numbers: list[int]) -> int:",
        "Return how many index pairs i < j have numbers[i] + numbers[j] == {k}.",
        "    count = 0\n    for i in range(len(numbers)):\n        for j in range(i + 1, len(numbers)):\n"
        "            if numbers[i] + numbers[j] == {k}:\n                count += 1\n    return count\n",
        lambda r: {"k": r.randint(-5, 10)},
        lambda r, n, p: (_ints(r, n, -5, 15),),
    ),
    FunctionTemplate(
        "collatz_steps",
        3,
        "def collatz_steps(n: int) -> int:",
        "Return how many steps the Collatz map (n/2 if n is even, 3n+1 if odd) takes from n (n >= 1) to reach 1.",
        "    steps = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n        steps += 1\n"
        "    return steps\n",
        lambda r: {},
        lambda r, n, p: (r.randint(1, 30 * n),),
    ),
    FunctionTemplate(
        "merge_sorted",
        3,
        "def merge_sorted(first: list[int], second: list[int]) -> list[int]:",
        "Merge two ascending lists into one ascending list (keep duplicates).",
        "    result, i, j = [], 0, 0\n    while i < len(first) and j < len(second):\n"
        "        if first[i] <= second[j]:\n            result.append(first[i])\n            i += 1\n"
        "        else:\n            result.append(second[j])\n            j += 1\n"
        "    return result + first[i:] + second[j:]\n",
        lambda r: {},
        lambda r, n, p: (sorted(_ints(r, r.randint(0, n))), sorted(_ints(r, r.randint(0, n)))),
    ),
    FunctionTemplate(
        "word_counts",
        3,
        "def word_counts(text: str) -> dict[str, int]:",
        "Return a dict mapping each space-separated word of text to how many times it occurs.",
        "    counts = {{}}\n    for word in text.split():\n        counts[word] = counts.get(word, 0) + 1\n"
        "    return counts\n",
        lambda r: {},
        lambda r, n, p: (" ".join(r.choice(["ab", "cd", "ef", "gh", "ij"]) for _ in range(n)),),
    ),
)
TEMPLATES_BY_NAME = {template.name: template for template in TEMPLATES}


def _balanced(rng: random.Random, size: int) -> str:
    text = ""
    stack: list[str] = []  # open brackets, innermost last
    for _ in range(size):
        if stack and rng.random() < 0.5:
            text += {"(": ")", "[": "]", "{": "}"}[stack.pop()]
        else:
            opener = rng.choice("([{")
            stack.append(opener)
            text += opener
    return text + "".join({"(": ")", "[": "]", "{": "}"}[c] for c in reversed(stack))


def tier_for(difficulty: int) -> int:
    return min(3, (difficulty + 1) // 2)


def _reference_function(source: str, name: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<reference {name}>", "exec"), namespace)  # our own template code, never a completion
    return namespace[name]


class PythonFunctionFamily:
    """Generated function tasks; ``backend`` chooses where the hidden tests run (under the harness's limits)."""

    name = "python_function"
    verifier_version = "python-function-2"  # 2: hidden tests never readable by the candidate
    min_difficulty = 1
    max_difficulty = 5
    max_prompt_chars = 2048
    max_completion_chars = 8192

    def __init__(self, backend: str = "auto") -> None:
        self.backend = backend

    def generate(self, seed: int, difficulty: int) -> Task:
        if not self.min_difficulty <= difficulty <= self.max_difficulty:
            raise ValueError(f"difficulty must lie in [{self.min_difficulty}, {self.max_difficulty}], got {difficulty}")
        rng = random.Random(f"{self.name}:{seed}:{difficulty}")
        template = rng.choice([t for t in TEMPLATES if t.tier == tier_for(difficulty)])
        params = template.draw_params(rng)
        signature = template.signature.format(**params)
        body = template.body.format(**params)
        reference = _reference_function(f"{signature}\n{body}", template.name)
        size = 3 + 3 * difficulty
        cases = []
        for _ in range(6 + 2 * difficulty):
            args = template.draw_args(rng, size, params)
            cases.append((args, reference(*copy.deepcopy(args))))
        example_args, example_result = cases[0]
        shown_args = ", ".join(repr(a) for a in example_args)
        doc = template.doc.format(**params)
        code_prompt = (
            f'{signature}\n    """{doc}\n\n    >>> {template.name}({shown_args})\n    {example_result!r}\n    """\n'
        )
        return Task(
            task_id=f"{self.name}[{template.name}]:d{difficulty}:s{seed}",
            prompt=PYTHON_INSTRUCTION + code_prompt,
            reference=body,
            difficulty=difficulty,
            data={
                "template": template.name,
                "entry_point": template.name,
                "test_code": _test_code(cases),
                "num_tests": len(cases),
            },
        )

    def verify(self, task: Task, completion: str) -> Verdict:
        return verify_python_task(
            task, completion, self.verifier_version, self.max_completion_chars, backend=self.backend
        )


def _test_code(cases: list[tuple[tuple, Any]]) -> str:
    """HumanEval-style ``check(candidate)``; results must match in value and top-level type (True is not 1)."""
    lines = ["def check(candidate):", "    cases = ["]
    lines += [f"        ({args!r}, {expected!r})," for args, expected in cases]
    lines += [
        "    ]",
        "    for args, expected in cases:",
        "        result = candidate(*args)",
        "        assert type(result) is type(expected) and result == expected, \\",
        "            f'for arguments {args!r:.80} expected {expected!r:.60}, got {result!r:.60}'",
        "",
    ]
    return "\n".join(lines)
