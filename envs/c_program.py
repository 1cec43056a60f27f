"""Stdin/stdout problems solved in C: compiled with gcc and judged on several test inputs in the sandbox.

Each problem template has a statement, an input generator, a Python reference that computes the expected output
here in the trusted parent, and a reference C program (the task's reference completion). A completion passes when
it compiles and, on every test input, exits normally with output equal to the expected one (trailing whitespace on
lines and trailing blank lines ignored). The expected outputs never enter a sandbox: every test input runs the binary
in a fresh sandbox holding only the binary and that input on stdin, and the output is compared here, so a program
can neither read an expected output nor carry anything from one test to the next; a verdict records this
(``details["harness"]``) and the judge's own reason (``details["harness_reason"]``). The multi-turn variant answers a failed attempt with the compiler errors or
the first failing test as the next observation; the last, largest test is never revealed, so outputs learned from
feedback cannot be hard-coded into a pass. The judging is envs/program.py's ProgramFamily (the C row of the
language table) over these problems, with this env's own prompt, limits and task ids.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from verifarm.envs.program import FEEDBACK_SOURCE_CHARS, ProgramFamily, extract_source, normalize_output  # noqa: F401
from verifarm.sandbox.languages import C_COMPILE_LIMITS
from verifarm.sandbox.program import Limits

# gcc needs the sandbox's generous compile memory; 5 CPU seconds is far above what these programs take.
COMPILE_LIMITS = dataclasses.replace(C_COMPILE_LIMITS, cpu_seconds=5, wall_seconds=20)
RUN_LIMITS = Limits(
    cpu_seconds=1,
    wall_seconds=10,
    memory_bytes=128 * 1024 * 1024,
    max_processes=16,
    output_bytes=256 * 1024,
    file_size_bytes=1024 * 1024,
    open_files=32,
)


@dataclass(frozen=True)
class CProblem:
    name: str
    statement: str
    make_input: Callable[[random.Random, int], str]  # (rng, size) -> stdin text
    solve: Callable[[str], str]  # stdin text -> expected stdout, trusted Python
    reference_c: str

    @property
    def references(self) -> dict[str, str]:
        return {"c": self.reference_c}


def _numbers_input(rng: random.Random, size: int, bound: int = 10**9) -> str:
    n = rng.randint(1, size)
    return f"{n}\n" + " ".join(str(rng.randint(-bound, bound)) for _ in range(n)) + "\n"


def _numbers(text: str) -> list[int]:
    values = [int(token) for token in text.split()]
    return values[1 : 1 + values[0]]


def _count_primes_upto(limit: int) -> list[int]:
    sieve = bytearray([1]) * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    counts, running = [], 0
    for flag in sieve:
        running += flag
        counts.append(running)
    return counts


_PRIME_COUNTS = _count_primes_upto(100_000)


def _fibonacci_mod(n: int, modulus: int = 1_000_000_007) -> int:
    """F(n) mod m by fast doubling: F(2k) = F(k)(2F(k+1) - F(k)), F(2k+1) = F(k)^2 + F(k+1)^2."""
    a, b = 0, 1  # F(k), F(k+1) for k = the bits of n read so far
    for bit in bin(n)[2:]:
        a, b = a * (2 * b - a) % modulus, (a * a + b * b) % modulus
        if bit == "1":
            a, b = b, (a + b) % modulus
    return a


C_READ_NUMBERS = """#include <stdio.h>
#include <stdlib.h>
"""

# Reads "n" then n integers and returns them sorted ascending (NULL on a malformed first line).
C_READ_SORTED = (
    C_READ_NUMBERS
    + """static int compare(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}
static long long *read_sorted(int *n) {
    if (scanf("%d", n) != 1) return NULL;
    long long *a = malloc(sizeof *a * *n);
    for (int i = 0; i < *n; i++) scanf("%lld", &a[i]);
    qsort(a, *n, sizeof *a, compare);
    return a;
}
"""
)

PROBLEMS: tuple[CProblem, ...] = (
    CProblem(
        "sum_numbers",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print their sum.",
        _numbers_input,
        lambda text: f"{sum(_numbers(text))}\n",
        C_READ_NUMBERS
        + """int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long long sum = 0;
    for (int i = 0; i < n; i++) { long long x; scanf("%lld", &x); sum += x; }
    printf("%lld\\n", sum);
    return 0;
}
""",
    ),
    CProblem(
        "min_max",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print the smallest and the largest of them, separated by one space.",
        _numbers_input,
        lambda text: f"{min(_numbers(text))} {max(_numbers(text))}\n",
        C_READ_NUMBERS
        + """int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long long lo = 0, hi = 0;
    for (int i = 0; i < n; i++) {
        long long x; scanf("%lld", &x);
        if (i == 0 || x < lo) lo = x;
        if (i == 0 || x > hi) hi = x;
    }
    printf("%lld %lld\\n", lo, hi);
    return 0;
}
""",
    ),
    CProblem(
        "reverse",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print them in reverse order on one line, separated by single spaces.",
        _numbers_input,
        lambda text: " ".join(str(x) for x in reversed(_numbers(text))) + "\n",
        C_READ_NUMBERS
        + """int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long long *a = malloc(sizeof *a * n);
    for (int i = 0; i < n; i++) scanf("%lld", &a[i]);
    for (int i = n - 1; i >= 0; i--) printf("%lld%c", a[i], i ? ' ' : '\\n');
    free(a);
    return 0;
}
""",
    ),
    CProblem(
        "sort_numbers",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print them in ascending order on one line, separated by single spaces.",
        _numbers_input,
        lambda text: " ".join(str(x) for x in sorted(_numbers(text))) + "\n",
        C_READ_SORTED
        + """int main(void) {
    int n;
    long long *a = read_sorted(&n);
    if (a == NULL) return 1;
    for (int i = 0; i < n; i++) printf("%lld%c", a[i], i == n - 1 ? '\\n' : ' ');
    free(a);
    return 0;
}
""",
    ),
    CProblem(
        "distinct_count",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print how many distinct values there are.",
        lambda rng, size: _numbers_input(rng, size, bound=rng.choice([3, 20, 10**9])),
        lambda text: f"{len(set(_numbers(text)))}\n",
        C_READ_SORTED
        + """int main(void) {
    int n;
    long long *a = read_sorted(&n);
    if (a == NULL) return 1;
    int distinct = 0;
    for (int i = 0; i < n; i++) if (i == 0 || a[i] != a[i - 1]) distinct++;
    printf("%d\\n", distinct);
    free(a);
    return 0;
}
""",
    ),
    CProblem(
        "prefix_sums",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print the n prefix sums (the i-th is the sum of the first i numbers) on one line, separated by spaces.",
        _numbers_input,
        lambda text: " ".join(str(x) for x in itertools.accumulate(_numbers(text))) + "\n",
        C_READ_NUMBERS
        + """int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long long sum = 0;
    for (int i = 0; i < n; i++) {
        long long x; scanf("%lld", &x); sum += x;
        printf("%lld%c", sum, i == n - 1 ? '\\n' : ' ');
    }
    return 0;
}
""",
    ),
    CProblem(
        "count_primes",
        "The first line holds q (1 <= q <= 1000); each of the next q lines holds an integer m (1 <= m <= 100000).\n"
        "For each m print, on its own line, how many primes are less than or equal to m.",
        lambda rng, size: (
            f"{size}\n" + "".join(f"{rng.randint(1, 100_000 if rng.random() < 0.5 else 100)}\n" for _ in range(size))
        ),
        lambda text: "".join(f"{_PRIME_COUNTS[int(m)]}\n" for m in text.split()[1:]),
        """#include <stdio.h>
#define LIMIT 100000
static char composite[LIMIT + 1];
static int counts[LIMIT + 1];
int main(void) {
    composite[0] = composite[1] = 1;
    for (int i = 2; (long long)i * i <= LIMIT; i++)
        if (!composite[i]) for (int j = i * i; j <= LIMIT; j += i) composite[j] = 1;
    for (int i = 1; i <= LIMIT; i++) counts[i] = counts[i - 1] + !composite[i];
    int q;
    if (scanf("%d", &q) != 1) return 1;
    while (q--) { int m; scanf("%d", &m); printf("%d\\n", counts[m]); }
    return 0;
}
""",
    ),
    CProblem(
        "gcd_lcm",
        "The first line holds q (1 <= q <= 1000); each of the next q lines holds two integers a and b\n"
        "(1 <= a, b <= 10^6). For each pair print its greatest common divisor and least common multiple,\n"
        "separated by one space, on its own line.",
        lambda rng, size: (
            f"{size}\n" + "".join(f"{rng.randint(1, 10**6)} {rng.randint(1, 10**6)}\n" for _ in range(size))
        ),
        lambda text: "".join(
            f"{math.gcd(a, b)} {a * b // math.gcd(a, b)}\n"
            for a, b in zip(*[iter(int(t) for t in text.split()[1:])] * 2)
        ),
        """#include <stdio.h>
static long long gcd(long long a, long long b) { while (b) { long long t = a % b; a = b; b = t; } return a; }
int main(void) {
    int q;
    if (scanf("%d", &q) != 1) return 1;
    while (q--) {
        long long a, b; scanf("%lld %lld", &a, &b);
        long long g = gcd(a, b);
        printf("%lld %lld\\n", g, a / g * b);
    }
    return 0;
}
""",
    ),
    CProblem(
        "fibonacci_mod",
        "The input is one integer n (0 <= n <= 1000000). Print F(n) modulo 1000000007, where F(0) = 0, F(1) = 1\n"
        "and F(i) = F(i-1) + F(i-2).",
        lambda rng, size: f"{rng.randint(0, min(10**6, 50 * size * size))}\n",
        lambda text: f"{_fibonacci_mod(int(text.split()[0]))}\n",
        """#include <stdio.h>
int main(void) {
    long long n;
    if (scanf("%lld", &n) != 1) return 1;
    long long a = 0, b = 1;
    for (long long i = 0; i < n; i++) { long long t = (a + b) % 1000000007LL; a = b; b = t; }
    printf("%lld\\n", a);
    return 0;
}
""",
    ),
    CProblem(
        "palindromes",
        "The first line holds q (1 <= q <= 1000); each of the next q lines holds one word of 1 to 100 lowercase\n"
        "letters. For each word print YES if it reads the same backwards, otherwise NO, on its own line.",
        lambda rng, size: f"{size}\n" + "".join(f"{_maybe_palindrome(rng)}\n" for _ in range(size)),
        lambda text: "".join("YES\n" if w == w[::-1] else "NO\n" for w in text.split()[1:]),
        """#include <stdio.h>
#include <string.h>
int main(void) {
    int q;
    if (scanf("%d", &q) != 1) return 1;
    char word[128];
    while (q--) {
        scanf("%127s", word);
        int n = strlen(word), ok = 1;
        for (int i = 0; i < n / 2; i++) if (word[i] != word[n - 1 - i]) ok = 0;
        puts(ok ? "YES" : "NO");
    }
    return 0;
}
""",
    ),
)
PROBLEMS_BY_NAME = {problem.name: problem for problem in PROBLEMS}


def _maybe_palindrome(rng: random.Random) -> str:
    half = "".join(rng.choice("abc") for _ in range(rng.randint(1, 8)))
    if rng.random() < 0.5:
        return half + half[::-1][rng.randint(0, 1) :]
    return half + "".join(rng.choice("abc") for _ in range(rng.randint(1, 4)))


def extract_c_source(completion: str) -> str:
    """The last fenced block, or the whole completion when it has none."""
    return extract_source(completion)


class CProgramFamily(ProgramFamily):
    """C stdin/stdout tasks; ``multi_turn`` turns on feedback for up to ``max_turns`` attempts."""

    seed_prefix = "c_program"
    show_stderr = False

    def __init__(
        self,
        multi_turn: bool = False,
        max_turns: int = 3,
        backend: str = "auto",
        compile_limits: Limits = COMPILE_LIMITS,
        run_limits: Limits = RUN_LIMITS,
    ) -> None:
        super().__init__("c", multi_turn, max_turns, backend, compile_limits, run_limits)
        self.name = "c_program_multi_turn" if multi_turn else "c_program"
        self.verifier_version = "c-program-1"
        # Room for the prompt, the previous program and the feedback in a multi-turn observation.
        self.max_prompt_chars = 2048 + (FEEDBACK_SOURCE_CHARS + 2500 if multi_turn else 0)

    @property
    def problems(self) -> tuple[CProblem, ...]:
        return PROBLEMS

    def intro(self) -> str:
        return (
            "Write a complete C program (C11, standard library only) that reads standard input and writes "
            "standard output."
        )

    def task_id(self, problem_name: str, seed: int, difficulty: int) -> str:
        return f"c_program[{problem_name}]:d{difficulty}:s{seed}"

    def task_data(self, problem_name: str, inputs: list[str], outputs: list[str]) -> dict:
        return {"problem": problem_name, "inputs": inputs, "outputs": outputs}
