"""The C env's ten stdin/stdout problems: statement, input generator, trusted Python solver and reference C program.

envs/program_problems.py gives the same ten (and ten more) a reference in every language of the sandbox's table.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

from verifarm.envs.program_problem import ProgramProblem


def _c_problem(
    name: str, statement: str, make_input: Callable[[random.Random, int], str], solve: Callable[[str], str], c: str
) -> ProgramProblem:
    return ProgramProblem(name, statement, make_input, solve, {"c": c})


def numbers_input(rng: random.Random, size: int, bound: int = 10**9) -> str:
    n = rng.randint(1, size)
    return f"{n}\n" + " ".join(str(rng.randint(-bound, bound)) for _ in range(n)) + "\n"


def numbers(text: str) -> list[int]:
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

PROBLEMS: tuple[ProgramProblem, ...] = (
    _c_problem(
        "sum_numbers",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print their sum.",
        numbers_input,
        lambda text: f"{sum(numbers(text))}\n",
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
    _c_problem(
        "min_max",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print the smallest and the largest of them, separated by one space.",
        numbers_input,
        lambda text: f"{min(numbers(text))} {max(numbers(text))}\n",
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
    _c_problem(
        "reverse",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print them in reverse order on one line, separated by single spaces.",
        numbers_input,
        lambda text: " ".join(str(x) for x in reversed(numbers(text))) + "\n",
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
    _c_problem(
        "sort_numbers",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print them in ascending order on one line, separated by single spaces.",
        numbers_input,
        lambda text: " ".join(str(x) for x in sorted(numbers(text))) + "\n",
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
    _c_problem(
        "distinct_count",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print how many distinct values there are.",
        lambda rng, size: numbers_input(rng, size, bound=rng.choice([3, 20, 10**9])),
        lambda text: f"{len(set(numbers(text)))}\n",
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
    _c_problem(
        "prefix_sums",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print the n prefix sums (the i-th is the sum of the first i numbers) on one line, separated by spaces.",
        numbers_input,
        lambda text: " ".join(str(x) for x in itertools.accumulate(numbers(text))) + "\n",
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
    _c_problem(
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
    _c_problem(
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
    _c_problem(
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
    _c_problem(
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
