"""Stdin/stdout problems with a reference solution in every language of the sandbox's table.

The first ten are the C env's problems (statement, input generator, trusted Python solver and C reference are
taken from envs/c_problems.py, so they cannot drift apart); the other ten are new. Each reference is a complete
program, built here from a per-language skeleton (token reader, buffered writer) and a short body, so the
references stay short and read alike across languages. Input generators take (rng, size) and are also what the
translate campaign draws its differential inputs from.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable

from verifarm.envs.c_problems import PROBLEMS_BY_NAME as C_PROBLEMS
from verifarm.envs.c_problems import numbers, numbers_input
from verifarm.envs.program_problem import ProgramProblem
from verifarm.sandbox.languages import LANGUAGE_NAMES

SKELETONS = {
    "python": "import sys\n\nt = sys.stdin.read().split()\n{body}",
    "c": "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\nint main(void) {{\n{body}    return 0;\n}}\n",
    "cpp": "#include <bits/stdc++.h>\nusing namespace std;\ntypedef long long ll;\n\nint main() {{\n"
    "    ios::sync_with_stdio(false);\n    cin.tie(nullptr);\n{body}    return 0;\n}}\n",
    "go": 'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n\t"sort"\n\t"strconv"\n\t"strings"\n)\n\n'
    "var _ = sort.Slice\nvar _ = strings.Repeat\nvar in = bufio.NewReaderSize(os.Stdin, 1<<20)\n"
    "var out = bufio.NewWriterSize(os.Stdout, 1<<20)\n\nfunc next() string {{\n\tvar s string\n"
    "\tfmt.Fscan(in, &s)\n\treturn s\n}}\n\nfunc num() int64 {{\n\tv, _ := strconv.ParseInt(next(), 10, 64)\n"
    "\treturn v\n}}\n\nfunc main() {{\n\tdefer out.Flush()\n{body}}}\n",
    "rust": "use std::io::{{self, Read, Write}};\n\nfn main() {{\n    let mut input = String::new();\n"
    "    io::stdin().read_to_string(&mut input).unwrap();\n    let mut it = input.split_ascii_whitespace();\n"
    "    #[allow(unused_macros)]\n"
    "    macro_rules! num {{ () => {{ it.next().unwrap().parse::<i64>().unwrap() }} }}\n"
    "    #[allow(unused_macros)]\n    macro_rules! word {{ () => {{ it.next().unwrap() }} }}\n"
    "    let stdout = io::stdout();\n    let mut out = io::BufWriter::new(stdout.lock());\n{body}}}\n",
    "javascript": "const t = require('fs').readFileSync(0, 'utf8').split(/\\s+/).filter((s) => s.length);\n"
    "let at = 0;\n"
    "const next = () => t[at++];\nconst num = () => Number(t[at++]);\nconst out = [];\n{body}"
    "process.stdout.write(out.join('\\n') + '\\n');\n",
    "java": "import java.io.*;\nimport java.util.*;\n\npublic class Main {{\n"
    "    static BufferedReader in = new BufferedReader(new InputStreamReader(System.in));\n"
    '    static StringTokenizer tok = new StringTokenizer("");\n\n'
    "    static String next() throws IOException {{\n"
    "        while (!tok.hasMoreTokens()) tok = new StringTokenizer(in.readLine());\n"
    "        return tok.nextToken();\n    }}\n\n"
    "    static long num() throws IOException {{\n        return Long.parseLong(next());\n    }}\n\n"
    "    public static void main(String[] args) throws IOException {{\n"
    "        StringBuilder out = new StringBuilder();\n{body}        System.out.print(out);\n    }}\n}}\n",
}
_INDENT = {"python": "", "c": "    ", "cpp": "    ", "go": "\t", "rust": "    ", "javascript": "", "java": "        "}


def _program(language: str, body: str) -> str:
    indent = _INDENT[language]
    lines = body.strip("\n").split("\n")
    if language == "go":  # bodies are written with four spaces; gofmt style is tabs
        lines = [line.replace("    ", "\t") for line in lines]
    return SKELETONS[language].format(body="".join(f"{indent}{line}\n" if line else "\n" for line in lines))


def _references(**bodies: str) -> dict[str, str]:
    return {language: _program(language, body) for language, body in bodies.items()}


def _queries_input(make_one: Callable[[random.Random], str]) -> Callable[[random.Random, int], str]:
    return lambda rng, size: f"{size}\n" + "".join(f"{make_one(rng)}\n" for _ in range(size))


def _word(rng: random.Random, letters: str = "abcdefghijklmnopqrstuvwxyz") -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(1, 12)))


def _queries(text: str) -> list[str]:
    tokens = text.split()
    return tokens[1:]


def _max_subarray(text: str) -> str:
    best, running = None, 0
    for x in numbers(text):
        running = x if best is None or running < 0 else running + x
        best = running if best is None else max(best, running)
    return f"{best}\n"


def _range_sums_input(rng: random.Random, size: int) -> str:
    n = rng.randint(1, size)
    values = " ".join(str(rng.randint(-(10**9), 10**9)) for _ in range(n))
    queries = []
    for _ in range(rng.randint(1, size)):
        left = rng.randint(1, n)
        queries.append(f"{left} {rng.randint(left, n)}")
    return f"{n}\n{values}\n{len(queries)}\n" + "\n".join(queries) + "\n"


def _range_sums(text: str) -> str:
    tokens = [int(token) for token in text.split()]
    n = tokens[0]
    prefix = [0]
    for x in tokens[1 : 1 + n]:
        prefix.append(prefix[-1] + x)
    q = tokens[1 + n]
    pairs = tokens[2 + n : 2 + n + 2 * q]
    return "".join(f"{prefix[right] - prefix[left - 1]}\n" for left, right in zip(pairs[::2], pairs[1::2]))


def _collatz(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def _zero_pairs(text: str) -> str:
    counts = Counter(numbers(text))
    pairs = sum(counts[x] * counts[-x] for x in counts if x > 0) + counts[0] * (counts[0] - 1) // 2
    return f"{pairs}\n"


def _diagonal_input(rng: random.Random, size: int) -> str:
    n = rng.randint(1, min(size, 50))
    rows = [" ".join(str(rng.randint(-1000, 1000)) for _ in range(n)) for _ in range(n)]
    return f"{n}\n" + "\n".join(rows) + "\n"


def _diagonal_sums(text: str) -> str:
    tokens = [int(token) for token in text.split()]
    n, cells = tokens[0], tokens[1:]
    return f"{sum(cells[i * n + i] for i in range(n))} {sum(cells[i * n + n - 1 - i] for i in range(n))}\n"


def _caesar(text: str) -> str:
    tokens = text.split()[1:]
    return "".join(
        "".join(chr((ord(c) - 97 + int(k)) % 26 + 97) for c in word) + "\n"
        for k, word in zip(tokens[::2], tokens[1::2])
    )


# --- the C env's ten problems in the six other languages ----------------------------------------------------------

_FROM_C = {
    "sum_numbers": _references(
        python="n = int(t[0])\nprint(sum(int(x) for x in t[1:1 + n]))\n",
        cpp="int n; cin >> n;\nll s = 0;\nfor (int i = 0; i < n; i++) { ll x; cin >> x; s += x; }\n"
        'cout << s << "\\n";\n',
        go="n := int(num())\nvar s int64\nfor i := 0; i < n; i++ {\n    s += num()\n}\nfmt.Fprintln(out, s)\n",
        rust='let n = num!();\nlet mut s: i64 = 0;\nfor _ in 0..n { s += num!(); }\nwriteln!(out, "{}", s).unwrap();\n',
        javascript="const n = num();\nlet s = 0;\nfor (let i = 0; i < n; i++) s += num();\nout.push(String(s));\n",
        java="int n = (int) num();\nlong s = 0;\nfor (int i = 0; i < n; i++) s += num();\n"
        "out.append(s).append('\\n');\n",
    ),
    "min_max": _references(
        python="n = int(t[0])\na = [int(x) for x in t[1:1 + n]]\nprint(min(a), max(a))\n",
        cpp="int n; cin >> n;\nll lo = LLONG_MAX, hi = LLONG_MIN;\n"
        "for (int i = 0; i < n; i++) { ll x; cin >> x; lo = min(lo, x); hi = max(hi, x); }\n"
        'cout << lo << " " << hi << "\\n";\n',
        go="n := int(num())\nlo, hi := num(), int64(0)\nhi = lo\nfor i := 1; i < n; i++ {\n    x := num()\n"
        "    if x < lo {\n        lo = x\n    }\n    if x > hi {\n        hi = x\n    }\n}\n"
        "fmt.Fprintln(out, lo, hi)\n",
        rust="let n = num!();\nlet a: Vec<i64> = (0..n).map(|_| num!()).collect();\n"
        'writeln!(out, "{} {}", a.iter().min().unwrap(), a.iter().max().unwrap()).unwrap();\n',
        javascript="const n = num();\nlet lo = Infinity, hi = -Infinity;\n"
        "for (let i = 0; i < n; i++) { const x = num(); lo = Math.min(lo, x); hi = Math.max(hi, x); }\n"
        "out.push(`${lo} ${hi}`);\n",
        java="int n = (int) num();\nlong lo = Long.MAX_VALUE, hi = Long.MIN_VALUE;\n"
        "for (int i = 0; i < n; i++) { long x = num(); lo = Math.min(lo, x); hi = Math.max(hi, x); }\n"
        "out.append(lo).append(' ').append(hi).append('\\n');\n",
    ),
    "reverse": _references(
        python='n = int(t[0])\nprint(" ".join(reversed(t[1:1 + n])))\n',
        cpp="int n; cin >> n;\nvector<ll> a(n);\nfor (auto &x : a) cin >> x;\n"
        "for (int i = n - 1; i >= 0; i--) cout << a[i] << (i ? ' ' : '\\n');\n",
        go="n := int(num())\na := make([]string, n)\nfor i := range a {\n    a[n-1-i] = next()\n}\n"
        'fmt.Fprintln(out, strings.Join(a, " "))\n',
        rust="let n = num!();\nlet mut a: Vec<i64> = (0..n).map(|_| num!()).collect();\na.reverse();\n"
        "let s: Vec<String> = a.iter().map(|x| x.to_string()).collect();\n"
        'writeln!(out, "{}", s.join(" ")).unwrap();\n',
        javascript="const n = num();\nout.push(t.slice(1, 1 + n).reverse().join(' '));\n",
        java="int n = (int) num();\nlong[] a = new long[n];\nfor (int i = 0; i < n; i++) a[i] = num();\n"
        "for (int i = n - 1; i >= 0; i--) out.append(a[i]).append(i > 0 ? ' ' : '\\n');\n",
    ),
    "sort_numbers": _references(
        python='n = int(t[0])\nprint(" ".join(str(x) for x in sorted(int(x) for x in t[1:1 + n])))\n',
        cpp="int n; cin >> n;\nvector<ll> a(n);\nfor (auto &x : a) cin >> x;\nsort(a.begin(), a.end());\n"
        "for (int i = 0; i < n; i++) cout << a[i] << (i == n - 1 ? '\\n' : ' ');\n",
        go="n := int(num())\na := make([]int64, n)\nfor i := range a {\n    a[i] = num()\n}\n"
        "sort.Slice(a, func(i, j int) bool { return a[i] < a[j] })\nfor i, x := range a {\n    if i > 0 {\n"
        '        out.WriteString(" ")\n    }\n    out.WriteString(strconv.FormatInt(x, 10))\n}\n'
        'out.WriteString("\\n")\n',
        rust="let n = num!();\nlet mut a: Vec<i64> = (0..n).map(|_| num!()).collect();\na.sort();\n"
        "let s: Vec<String> = a.iter().map(|x| x.to_string()).collect();\n"
        'writeln!(out, "{}", s.join(" ")).unwrap();\n',
        javascript="const n = num();\nconst a = [];\nfor (let i = 0; i < n; i++) a.push(num());\n"
        "a.sort((x, y) => x - y);\nout.push(a.join(' '));\n",
        java="int n = (int) num();\nlong[] a = new long[n];\nfor (int i = 0; i < n; i++) a[i] = num();\n"
        "Arrays.sort(a);\n"
        "for (int i = 0; i < n; i++) out.append(a[i]).append(i == n - 1 ? '\\n' : ' ');\n",
    ),
    "distinct_count": _references(
        python="n = int(t[0])\nprint(len(set(int(x) for x in t[1:1 + n])))\n",
        cpp="int n; cin >> n;\nset<ll> s;\nfor (int i = 0; i < n; i++) { ll x; cin >> x; s.insert(x); }\n"
        'cout << s.size() << "\\n";\n',
        go="n := int(num())\nseen := map[int64]bool{}\nfor i := 0; i < n; i++ {\n    seen[num()] = true\n}\n"
        "fmt.Fprintln(out, len(seen))\n",
        rust="let n = num!();\nlet s: std::collections::HashSet<i64> = (0..n).map(|_| num!()).collect();\n"
        'writeln!(out, "{}", s.len()).unwrap();\n',
        javascript="const n = num();\nconst s = new Set();\nfor (let i = 0; i < n; i++) s.add(num());\n"
        "out.push(String(s.size));\n",
        java="int n = (int) num();\nSet<Long> s = new HashSet<>();\nfor (int i = 0; i < n; i++) s.add(num());\n"
        "out.append(s.size()).append('\\n');\n",
    ),
    "prefix_sums": _references(
        python="n = int(t[0])\nsums, s = [], 0\nfor x in t[1:1 + n]:\n    s += int(x)\n    sums.append(str(s))\n"
        'print(" ".join(sums))\n',
        cpp="int n; cin >> n;\nll s = 0;\n"
        "for (int i = 0; i < n; i++) { ll x; cin >> x; s += x; cout << s << (i == n - 1 ? '\\n' : ' '); }\n",
        go="n := int(num())\nvar s int64\nparts := make([]string, n)\nfor i := range parts {\n    s += num()\n"
        '    parts[i] = strconv.FormatInt(s, 10)\n}\nfmt.Fprintln(out, strings.Join(parts, " "))\n',
        rust="let n = num!();\nlet mut s: i64 = 0;\n"
        "let parts: Vec<String> = (0..n).map(|_| { s += num!(); s.to_string() }).collect();\n"
        'writeln!(out, "{}", parts.join(" ")).unwrap();\n',
        javascript="const n = num();\nlet s = 0;\nconst a = [];\n"
        "for (let i = 0; i < n; i++) { s += num(); a.push(s); }\n"
        "out.push(a.join(' '));\n",
        java="int n = (int) num();\nlong s = 0;\n"
        "for (int i = 0; i < n; i++) { s += num(); out.append(s).append(i == n - 1 ? '\\n' : ' '); }\n",
    ),
    "count_primes": _references(
        python="LIMIT = 100000\ncomposite = bytearray(LIMIT + 1)\ncounts = [0] * (LIMIT + 1)\n"
        "for i in range(2, LIMIT + 1):\n    if not composite[i]:\n"
        '        composite[i * i::i] = b"\\x01" * len(range(i * i, LIMIT + 1, i))\n'
        "    counts[i] = counts[i - 1] + (not composite[i])\n"
        'print("\\n".join(str(counts[int(m)]) for m in t[1:1 + int(t[0])]))\n',
        cpp="const int L = 100000;\nvector<int> cnt(L + 1, 0);\nvector<bool> comp(L + 1, false);\n"
        "for (int i = 2; i <= L; i++) {\n    if (!comp[i]) for (ll j = (ll)i * i; j <= L; j += i) comp[j] = true;\n"
        "    cnt[i] = cnt[i - 1] + !comp[i];\n}\nint q; cin >> q;\n"
        'while (q--) { int m; cin >> m; cout << cnt[m] << "\\n"; }\n',
        go="const L = 100000\ncomp := make([]bool, L+1)\ncnt := make([]int, L+1)\nfor i := 2; i <= L; i++ {\n"
        "    if !comp[i] {\n        for j := i * i; j <= L; j += i {\n            comp[j] = true\n        }\n"
        "        cnt[i] = cnt[i-1] + 1\n    } else {\n        cnt[i] = cnt[i-1]\n    }\n}\nq := int(num())\n"
        "for k := 0; k < q; k++ {\n    fmt.Fprintln(out, cnt[num()])\n}\n",
        rust="const L: usize = 100000;\nlet mut comp = vec![false; L + 1];\nlet mut cnt = vec![0u32; L + 1];\n"
        "for i in 2..=L {\n    if !comp[i] { let mut j = i * i; while j <= L { comp[j] = true; j += i; } }\n"
        "    cnt[i] = cnt[i - 1] + if comp[i] { 0 } else { 1 };\n}\nlet q = num!();\n"
        'for _ in 0..q { let m = num!() as usize; writeln!(out, "{}", cnt[m]).unwrap(); }\n',
        javascript="const L = 100000;\nconst comp = new Uint8Array(L + 1);\nconst cnt = new Int32Array(L + 1);\n"
        "for (let i = 2; i <= L; i++) {\n  if (!comp[i]) for (let j = i * i; j <= L; j += i) comp[j] = 1;\n"
        "  cnt[i] = cnt[i - 1] + (comp[i] ? 0 : 1);\n}\nconst q = num();\n"
        "for (let k = 0; k < q; k++) out.push(String(cnt[num()]));\n",
        java="final int L = 100000;\nboolean[] comp = new boolean[L + 1];\nint[] cnt = new int[L + 1];\n"
        "for (int i = 2; i <= L; i++) {\n"
        "    if (!comp[i]) for (long j = (long) i * i; j <= L; j += i) comp[(int) j] = true;\n"
        "    cnt[i] = cnt[i - 1] + (comp[i] ? 0 : 1);\n}\nint q = (int) num();\n"
        "for (int k = 0; k < q; k++) out.append(cnt[(int) num()]).append('\\n');\n",
    ),
    "gcd_lcm": _references(
        python="from math import gcd\nq = int(t[0])\nlines = []\nfor i in range(q):\n"
        "    a, b = int(t[1 + 2 * i]), int(t[2 + 2 * i])\n    g = gcd(a, b)\n"
        '    lines.append(f"{g} {a // g * b}")\n'
        'print("\\n".join(lines))\n',
        cpp="int q; cin >> q;\n"
        'while (q--) { ll a, b; cin >> a >> b; ll g = __gcd(a, b); cout << g << " " << a / g * b << "\\n"; }\n',
        go="q := int(num())\nfor k := 0; k < q; k++ {\n    a, b := num(), num()\n    x, y := a, b\n    for y != 0 {\n"
        "        x, y = y, x%y\n    }\n    fmt.Fprintln(out, x, a/x*b)\n}\n",
        rust="let q = num!();\nfor _ in 0..q {\n    let (a, b) = (num!(), num!());\n    let (mut x, mut y) = (a, b);\n"
        "    while y != 0 { let r = x % y; x = y; y = r; }\n"
        '    writeln!(out, "{} {}", x, a / x * b).unwrap();\n}\n',
        javascript="const q = num();\nfor (let k = 0; k < q; k++) {\n  const a = num(), b = num();\n"
        "  let x = a, y = b;\n"
        "  while (y !== 0) [x, y] = [y, x % y];\n  out.push(`${x} ${(a / x) * b}`);\n}\n",
        java="int q = (int) num();\nfor (int k = 0; k < q; k++) {\n    long a = num(), b = num(), x = a, y = b;\n"
        "    while (y != 0) { long r = x % y; x = y; y = r; }\n"
        "    out.append(x).append(' ').append(a / x * b).append('\\n');\n}\n",
    ),
    "fibonacci_mod": _references(
        python="n = int(t[0])\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, (a + b) % 1000000007\nprint(a)\n",
        cpp="ll n; cin >> n;\nll a = 0, b = 1;\n"
        "for (ll i = 0; i < n; i++) { ll c = (a + b) % 1000000007; a = b; b = c; }\n"
        'cout << a << "\\n";\n',
        go="n := num()\nvar a, b int64 = 0, 1\nfor i := int64(0); i < n; i++ {\n    a, b = b, (a+b)%1000000007\n}\n"
        "fmt.Fprintln(out, a)\n",
        rust="let n = num!();\nlet (mut a, mut b) = (0i64, 1i64);\n"
        "for _ in 0..n { let c = (a + b) % 1000000007; a = b; b = c; }\n"
        'writeln!(out, "{}", a).unwrap();\n',
        javascript="const n = num();\nlet a = 0, b = 1;\n"
        "for (let i = 0; i < n; i++) [a, b] = [b, (a + b) % 1000000007];\n"
        "out.push(String(a));\n",
        java="long n = num(), a = 0, b = 1;\n"
        "for (long i = 0; i < n; i++) { long c = (a + b) % 1000000007L; a = b; b = c; }\n"
        "out.append(a).append('\\n');\n",
    ),
    "palindromes": _references(
        python='print("\\n".join("YES" if w == w[::-1] else "NO" for w in t[1:1 + int(t[0])]))\n',
        cpp="int q; cin >> q;\n"
        "while (q--) { string w; cin >> w; string r(w.rbegin(), w.rend()); "
        'cout << (w == r ? "YES" : "NO") << "\\n"; }\n',
        go="q := int(num())\nfor k := 0; k < q; k++ {\n    w := next()\n    ok := true\n"
        "    for i := 0; i < len(w)/2; i++ {\n"
        "        if w[i] != w[len(w)-1-i] {\n            ok = false\n        }\n    }\n    if ok {\n"
        '        fmt.Fprintln(out, "YES")\n    } else {\n        fmt.Fprintln(out, "NO")\n    }\n}\n',
        rust="let q = num!();\nfor _ in 0..q {\n    let w = word!();\n    let r: String = w.chars().rev().collect();\n"
        '    writeln!(out, "{}", if w == r { "YES" } else { "NO" }).unwrap();\n}\n',
        javascript="const q = num();\n"
        "for (let k = 0; k < q; k++) { const w = next(); "
        "out.push(w === [...w].reverse().join('') ? 'YES' : 'NO'); }\n",
        java="int q = (int) num();\nfor (int k = 0; k < q; k++) {\n    String w = next();\n"
        '    out.append(new StringBuilder(w).reverse().toString().equals(w) ? "YES" : "NO").append(\'\\n\');\n'
        "}\n",
    ),
}

# --- ten more problems, every language written here ----------------------------------------------------------------

_NEW = (
    ProgramProblem(
        "max_subarray",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print the largest sum of a non-empty run of consecutive numbers.",
        numbers_input,
        _max_subarray,
        _references(
            python="n = int(t[0])\nbest = None\nrun = 0\nfor x in map(int, t[1:1 + n]):\n"
            "    run = x if best is None or run < 0 else run + x\n"
            "    best = run if best is None else max(best, run)\n"
            "print(best)\n",
            c='int n;\nif (scanf("%d", &n) != 1) return 1;\nlong long best = 0, run = 0;\n'
            'for (int i = 0; i < n; i++) {\n    long long x; scanf("%lld", &x);\n'
            "    run = (i == 0 || run < 0) ? x : run + x;\n"
            '    if (i == 0 || run > best) best = run;\n}\nprintf("%lld\\n", best);\n',
            cpp="int n; cin >> n;\nll best = LLONG_MIN, run = 0;\n"
            "for (int i = 0; i < n; i++) { ll x; cin >> x; run = (i == 0 || run < 0) ? x : run + x; "
            "best = max(best, run); }\n"
            'cout << best << "\\n";\n',
            go="n := int(num())\nvar best, run int64\nfor i := 0; i < n; i++ {\n    x := num()\n"
            "    if i == 0 || run < 0 {\n"
            "        run = x\n    } else {\n        run += x\n    }\n    if i == 0 || run > best {\n"
            "        best = run\n    }\n}\n"
            "fmt.Fprintln(out, best)\n",
            rust="let n = num!();\nlet (mut best, mut run) = (i64::MIN, 0i64);\n"
            "for i in 0..n { let x = num!(); run = if i == 0 || run < 0 { x } else { run + x }; "
            "best = best.max(run); }\n"
            'writeln!(out, "{}", best).unwrap();\n',
            javascript="const n = num();\nlet best = -Infinity, run = 0;\n"
            "for (let i = 0; i < n; i++) { const x = num(); run = i === 0 || run < 0 ? x : run + x; "
            "best = Math.max(best, run); }\n"
            "out.push(String(best));\n",
            java="int n = (int) num();\nlong best = Long.MIN_VALUE, run = 0;\n"
            "for (int i = 0; i < n; i++) { long x = num(); run = (i == 0 || run < 0) ? x : run + x; "
            "best = Math.max(best, run); }\n"
            "out.append(best).append('\\n');\n",
        ),
    ),
    ProgramProblem(
        "count_evens",
        "The first line holds n (1 <= n <= 100000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print how many of them are even.",
        numbers_input,
        lambda text: f"{sum(1 for x in numbers(text) if x % 2 == 0)}\n",
        _references(
            python="n = int(t[0])\nprint(sum(1 for x in t[1:1 + n] if int(x) % 2 == 0))\n",
            c='int n, evens = 0;\nif (scanf("%d", &n) != 1) return 1;\n'
            'for (int i = 0; i < n; i++) { long long x; scanf("%lld", &x); if (x % 2 == 0) evens++; }\n'
            'printf("%d\\n", evens);\n',
            cpp="int n, evens = 0; cin >> n;\n"
            "for (int i = 0; i < n; i++) { ll x; cin >> x; if (x % 2 == 0) evens++; }\n"
            'cout << evens << "\\n";\n',
            go="n := int(num())\nevens := 0\nfor i := 0; i < n; i++ {\n    if num()%2 == 0 {\n        evens++\n"
            "    }\n}\n"
            "fmt.Fprintln(out, evens)\n",
            rust="let n = num!();\nlet evens = (0..n).filter(|_| num!() % 2 == 0).count();\n"
            'writeln!(out, "{}", evens).unwrap();\n',
            javascript="const n = num();\nlet evens = 0;\nfor (let i = 0; i < n; i++) if (num() % 2 === 0) evens++;\n"
            "out.push(String(evens));\n",
            java="int n = (int) num(), evens = 0;\nfor (int i = 0; i < n; i++) if (num() % 2 == 0) evens++;\n"
            "out.append(evens).append('\\n');\n",
        ),
    ),
    ProgramProblem(
        "digit_sums",
        "The first line holds q (1 <= q <= 1000); each of the next q lines holds an integer m (0 <= m <= 10^9).\n"
        "For each m print the sum of its decimal digits on its own line.",
        _queries_input(lambda rng: str(rng.randint(0, 10 ** rng.randint(1, 9)))),
        lambda text: "".join(f"{sum(map(int, m))}\n" for m in _queries(text)),
        _references(
            python='print("\\n".join(str(sum(map(int, m))) for m in t[1:1 + int(t[0])]))\n',
            c='int q;\nif (scanf("%d", &q) != 1) return 1;\n'
            'while (q--) { long long m; scanf("%lld", &m); int s = 0; while (m) { s += m % 10; m /= 10; '
            '} printf("%d\\n", s); }\n',
            cpp="int q; cin >> q;\n"
            'while (q--) { ll m; cin >> m; int s = 0; while (m) { s += m % 10; m /= 10; } cout << s << "\\n"; '
            "}\n",
            go="q := int(num())\nfor k := 0; k < q; k++ {\n    m, s := num(), int64(0)\n    for m > 0 {\n"
            "        s += m % 10\n"
            "        m /= 10\n    }\n    fmt.Fprintln(out, s)\n}\n",
            rust="let q = num!();\nfor _ in 0..q {\n"
            "    let s: u32 = word!().chars().map(|c| c.to_digit(10).unwrap()).sum();\n"
            '    writeln!(out, "{}", s).unwrap();\n}\n',
            javascript="const q = num();\n"
            "for (let k = 0; k < q; k++) out.push(String([...next()].reduce((s, c) => s + Number(c), "
            "0)));\n",
            java="int q = (int) num();\nfor (int k = 0; k < q; k++) {\n    long m = num(), s = 0;\n"
            "    while (m > 0) { s += m % 10; m /= 10; }\n    out.append(s).append('\\n');\n}\n",
        ),
    ),
    ProgramProblem(
        "binary",
        "The first line holds q (1 <= q <= 1000); each of the next q lines holds an integer m (0 <= m <= 10^9).\n"
        "For each m print its binary representation without leading zeros (0 for zero) on its own line.",
        _queries_input(lambda rng: str(rng.randint(0, 10 ** rng.randint(0, 9)))),
        lambda text: "".join(f"{int(m):b}\n" for m in _queries(text)),
        _references(
            python='print("\\n".join(format(int(m), "b") for m in t[1:1 + int(t[0])]))\n',
            c='int q;\nif (scanf("%d", &q) != 1) return 1;\nwhile (q--) {\n    long long m; scanf("%lld", &m);\n'
            "    char bits[64]; int k = 0;\n    do { bits[k++] = '0' + (m & 1); m >>= 1; } while (m);\n"
            "    while (k) putchar(bits[--k]);\n    putchar('\\n');\n}\n",
            cpp="int q; cin >> q;\nwhile (q--) {\n    ll m; cin >> m;\n    string s;\n"
            "    do { s += char('0' + (m & 1)); m >>= 1; } while (m);\n"
            '    reverse(s.begin(), s.end());\n    cout << s << "\\n";\n}\n',
            go="q := int(num())\nfor k := 0; k < q; k++ {\n    fmt.Fprintln(out, strconv.FormatInt(num(), 2))\n}\n",
            rust='let q = num!();\nfor _ in 0..q { writeln!(out, "{:b}", num!()).unwrap(); }\n',
            javascript="const q = num();\nfor (let k = 0; k < q; k++) out.push(num().toString(2));\n",
            java="int q = (int) num();\n"
            "for (int k = 0; k < q; k++) out.append(Long.toBinaryString(num())).append('\\n');\n",
        ),
    ),
    ProgramProblem(
        "caesar",
        "The first line holds q (1 <= q <= 1000); each of the next q lines holds a shift k (0 <= k <= 25) and a word\n"
        "of 1 to 12 lowercase letters. For each line print the word with every letter moved k places forward in the\n"
        "alphabet (z wraps around to a), on its own line.",
        _queries_input(lambda rng: f"{rng.randint(0, 25)} {_word(rng)}"),
        _caesar,
        _references(
            python="q = int(t[0])\nlines = []\nfor i in range(q):\n    k, w = int(t[1 + 2 * i]), t[2 + 2 * i]\n"
            '    lines.append("".join(chr((ord(c) - 97 + k) % 26 + 97) for c in w))\n'
            'print("\\n".join(lines))\n',
            c='int q;\nif (scanf("%d", &q) != 1) return 1;\nchar w[64];\nwhile (q--) {\n'
            '    int k; scanf("%d %63s", &k, w);\n'
            "    for (char *c = w; *c; c++) *c = 'a' + (*c - 'a' + k) % 26;\n    puts(w);\n}\n",
            cpp="int q; cin >> q;\n"
            "while (q--) { int k; string w; cin >> k >> w; for (char &c : w) c = 'a' + (c - 'a' + k) % 26; "
            'cout << w << "\\n"; }\n',
            go="q := int(num())\nfor i := 0; i < q; i++ {\n    k := byte(num())\n    w := []byte(next())\n"
            "    for j := range w {\n"
            "        w[j] = 'a' + (w[j]-'a'+k)%26\n    }\n    fmt.Fprintln(out, string(w))\n}\n",
            rust="let q = num!();\nfor _ in 0..q {\n    let k = num!() as u8;\n"
            "    let w: String = word!().bytes().map(|c| (b'a' + (c - b'a' + k) % 26) as char).collect();\n"
            '    writeln!(out, "{}", w).unwrap();\n}\n',
            javascript="const q = num();\nfor (let i = 0; i < q; i++) {\n  const k = num();\n"
            "  out.push([...next()].map((c) => String.fromCharCode(((c.charCodeAt(0) - 97 + k) % 26) + 97)).join(''));\n}\n",
            java="int q = (int) num();\nfor (int i = 0; i < q; i++) {\n    int k = (int) num();\n"
            "    char[] w = next().toCharArray();\n"
            "    for (int j = 0; j < w.length; j++) w[j] = (char) ('a' + (w[j] - 'a' + k) % 26);\n"
            "    out.append(w).append('\\n');\n}\n",
        ),
    ),
    ProgramProblem(
        "count_vowels",
        "The first line holds q (1 <= q <= 1000); each of the next q lines holds one word of 1 to 12 lowercase\n"
        "letters. For each word print how many of its letters are vowels (a, e, i, o, u), on its own line.",
        _queries_input(_word),
        lambda text: "".join(f"{sum(c in 'aeiou' for c in w)}\n" for w in _queries(text)),
        _references(
            python='print("\\n".join(str(sum(c in "aeiou" for c in w)) for w in t[1:1 + int(t[0])]))\n',
            c='int q;\nif (scanf("%d", &q) != 1) return 1;\nchar w[64];\n'
            'while (q--) { scanf("%63s", w); int v = 0; for (char *c = w; *c; c++) v += strchr("aeiou", '
            '*c) != NULL; printf("%d\\n", v); }\n',
            cpp="int q; cin >> q;\n"
            "while (q--) { string w; cin >> w; int v = 0; "
            'for (char c : w) v += string("aeiou").find(c) != string::npos; cout << v << "\\n"; }\n',
            go="q := int(num())\nfor k := 0; k < q; k++ {\n    v := 0\n    for _, c := range next() {\n"
            '        if strings.ContainsRune("aeiou", c) {\n            v++\n        }\n    }\n'
            "    fmt.Fprintln(out, v)\n}\n",
            rust="let q = num!();\n"
            'for _ in 0..q { let v = word!().chars().filter(|c| "aeiou".contains(*c)).count(); writeln!(out, '
            '"{}", v).unwrap(); }\n',
            javascript="const q = num();\n"
            "for (let k = 0; k < q; "
            "k++) out.push(String([...next()].filter((c) => 'aeiou'.includes(c)).length));\n",
            java="int q = (int) num();\nfor (int k = 0; k < q; k++) {\n    int v = 0;\n"
            '    for (char c : next().toCharArray()) if ("aeiou".indexOf(c) >= 0) v++;\n'
            "    out.append(v).append('\\n');\n}\n",
        ),
    ),
    ProgramProblem(
        "range_sums",
        "The first line holds n (1 <= n <= 1000); the second holds n integers, each between -10^9 and 10^9; the\n"
        "third holds q (1 <= q <= 1000); each of the next q lines holds l and r (1 <= l <= r <= n). For each pair\n"
        "print the sum of the numbers in positions l to r (counted from 1), on its own line.",
        _range_sums_input,
        _range_sums,
        _references(
            python="n = int(t[0])\nprefix = [0]\nfor x in t[1:1 + n]:\n    prefix.append(prefix[-1] + int(x))\n"
            "q = int(t[1 + n])\nlines = []\nfor i in range(q):\n"
            "    l, r = int(t[2 + n + 2 * i]), int(t[3 + n + 2 * i])\n"
            "    lines.append(str(prefix[r] - prefix[l - 1]))\n"
            'print("\\n".join(lines))\n',
            c='int n, q;\nif (scanf("%d", &n) != 1) return 1;\nlong long *prefix = calloc(n + 1, sizeof *prefix);\n'
            'for (int i = 1; i <= n; i++) { long long x; scanf("%lld", &x); prefix[i] = prefix[i - 1] + x; }\n'
            'scanf("%d", &q);\n'
            'while (q--) { int l, r; scanf("%d %d", &l, &r); printf("%lld\\n", prefix[r] - prefix[l - 1]); }\n'
            "free(prefix);\n",
            cpp="int n; cin >> n;\nvector<ll> p(n + 1, 0);\n"
            "for (int i = 1; i <= n; i++) { ll x; cin >> x; p[i] = p[i - 1] + x; }\n"
            'int q; cin >> q;\nwhile (q--) { int l, r; cin >> l >> r; cout << p[r] - p[l - 1] << "\\n"; }\n',
            go="n := int(num())\np := make([]int64, n+1)\nfor i := 1; i <= n; i++ {\n    p[i] = p[i-1] + num()\n}\n"
            "q := int(num())\nfor k := 0; k < q; k++ {\n    l, r := num(), num()\n"
            "    fmt.Fprintln(out, p[r]-p[l-1])\n}\n",
            rust="let n = num!() as usize;\nlet mut p = vec![0i64; n + 1];\n"
            "for i in 1..=n { p[i] = p[i - 1] + num!(); }\n"
            "let q = num!();\n"
            'for _ in 0..q { let (l, r) = (num!() as usize, num!() as usize); writeln!(out, "{}", '
            "p[r] - p[l - 1]).unwrap(); }\n",
            javascript="const n = num();\nconst p = [0];\nfor (let i = 1; i <= n; i++) p.push(p[i - 1] + num());\n"
            "const q = num();\n"
            "for (let k = 0; k < q; k++) { const l = num(), r = num(); "
            "out.push(String(p[r] - p[l - 1])); }\n",
            java="int n = (int) num();\nlong[] p = new long[n + 1];\n"
            "for (int i = 1; i <= n; i++) p[i] = p[i - 1] + num();\n"
            "int q = (int) num();\n"
            "for (int k = 0; k < q; k++) { int l = (int) num(), r = (int) num(); "
            "out.append(p[r] - p[l - 1]).append('\\n'); }\n",
        ),
    ),
    ProgramProblem(
        "collatz_steps",
        "The first line holds q (1 <= q <= 1000); each of the next q lines holds an integer m (1 <= m <= 100000).\n"
        "For each m print how many steps m takes to reach 1, where a step halves an even number and turns an odd\n"
        "number x into 3x + 1, on its own line.",
        _queries_input(lambda rng: str(rng.randint(1, 100_000 if rng.random() < 0.7 else 30))),
        lambda text: "".join(f"{_collatz(int(m))}\n" for m in _queries(text)),
        _references(
            python="lines = []\nfor m in t[1:1 + int(t[0])]:\n    x, steps = int(m), 0\n    while x != 1:\n"
            "        x = x // 2 if x % 2 == 0 else 3 * x + 1\n        steps += 1\n    lines.append(str(steps))\n"
            'print("\\n".join(lines))\n',
            c='int q;\nif (scanf("%d", &q) != 1) return 1;\n'
            'while (q--) { long long x; scanf("%lld", &x); int s = 0; while (x != 1) { '
            'x = x % 2 ? 3 * x + 1 : x / 2; s++; } printf("%d\\n", s); }\n',
            cpp="int q; cin >> q;\n"
            "while (q--) { ll x; cin >> x; int s = 0; while (x != 1) { x = x % 2 ? 3 * x + 1 : x / 2; s++; "
            '} cout << s << "\\n"; }\n',
            go="q := int(num())\nfor k := 0; k < q; k++ {\n    x, s := num(), 0\n    for x != 1 {\n"
            "        if x%2 == 0 {\n"
            "            x /= 2\n        } else {\n            x = 3*x + 1\n        }\n        s++\n    }\n"
            "    fmt.Fprintln(out, s)\n}\n",
            rust="let q = num!();\nfor _ in 0..q {\n    let (mut x, mut s) = (num!(), 0);\n"
            "    while x != 1 { x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 }; s += 1; }\n"
            '    writeln!(out, "{}", s).unwrap();\n}\n',
            javascript="const q = num();\nfor (let k = 0; k < q; k++) {\n  let x = num(), s = 0;\n"
            "  while (x !== 1) { x = x % 2 === 0 ? x / 2 : 3 * x + 1; s++; }\n  out.push(String(s));\n}\n",
            java="int q = (int) num();\nfor (int k = 0; k < q; k++) {\n    long x = num();\n    int s = 0;\n"
            "    while (x != 1) { x = x % 2 == 0 ? x / 2 : 3 * x + 1; s++; }\n    out.append(s).append('\\n');\n"
            "}\n",
        ),
    ),
    ProgramProblem(
        "zero_pairs",
        "The first line holds n (1 <= n <= 1000); the second holds n integers, each between -10^9 and 10^9.\n"
        "Print how many pairs of positions i < j hold numbers that add up to 0.",
        lambda rng, size: numbers_input(rng, size, bound=rng.choice([3, 20, 10**9])),
        _zero_pairs,
        _references(
            python="from collections import Counter\nn = int(t[0])\ncounts = Counter(int(x) for x in t[1:1 + n])\n"
            "print(sum(counts[x] * counts[-x] for x in counts if x > 0) + counts[0] * (counts[0] - 1) // 2)\n",
            c='int n;\nif (scanf("%d", &n) != 1) return 1;\nlong long *a = malloc(sizeof *a * n), pairs = 0;\n'
            'for (int i = 0; i < n; i++) scanf("%lld", &a[i]);\n'
            "for (int i = 0; i < n; i++) for (int j = i + 1; j < n; j++) if (a[i] + a[j] == 0) pairs++;\n"
            'printf("%lld\\n", pairs);\nfree(a);\n',
            cpp="int n; cin >> n;\nmap<ll, ll> seen;\nll pairs = 0;\n"
            "for (int i = 0; i < n; i++) { ll x; cin >> x; pairs += seen[-x]; seen[x]++; }\n"
            'cout << pairs << "\\n";\n',
            go="n := int(num())\nseen := map[int64]int64{}\nvar pairs int64\nfor i := 0; i < n; i++ {\n    x := num()\n"
            "    pairs += seen[-x]\n    seen[x]++\n}\nfmt.Fprintln(out, pairs)\n",
            rust="let n = num!();\nlet mut seen = std::collections::HashMap::new();\nlet mut pairs: i64 = 0;\n"
            "for _ in 0..n { let x = num!(); pairs += *seen.get(&-x).unwrap_or(&0); "
            "*seen.entry(x).or_insert(0) += 1; }\n"
            'writeln!(out, "{}", pairs).unwrap();\n',
            javascript="const n = num();\nconst seen = new Map();\nlet pairs = 0;\n"
            "for (let i = 0; i < n; i++) { const x = num(); pairs += seen.get(-x) || 0; seen.set(x, "
            "(seen.get(x) || 0) + 1); }\n"
            "out.push(String(pairs));\n",
            java="int n = (int) num();\nMap<Long, Long> seen = new HashMap<>();\nlong pairs = 0;\n"
            "for (int i = 0; i < n; i++) { long x = num(); pairs += seen.getOrDefault(-x, 0L); seen.merge(x, "
            "1L, Long::sum); }\n"
            "out.append(pairs).append('\\n');\n",
        ),
    ),
    ProgramProblem(
        "diagonal_sums",
        "The first line holds n (1 <= n <= 50); each of the next n lines holds n integers between -1000 and 1000,\n"
        "a square grid. Print the sum of its main diagonal (top left to bottom right) and the sum of its other\n"
        "diagonal (top right to bottom left), separated by one space.",
        _diagonal_input,
        _diagonal_sums,
        _references(
            python="n = int(t[0])\ncells = [int(x) for x in t[1:1 + n * n]]\n"
            "print(sum(cells[i * n + i] for i in range(n)), sum(cells[i * n + n - 1 - i] for i in range(n)))\n",
            c='int n;\nif (scanf("%d", &n) != 1) return 1;\nlong long main_sum = 0, other = 0;\n'
            'for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) {\n    long long x; scanf("%lld", &x);\n'
            "    if (i == j) main_sum += x;\n    if (i + j == n - 1) other += x;\n}\n"
            'printf("%lld %lld\\n", main_sum, other);\n',
            cpp="int n; cin >> n;\nll a = 0, b = 0;\nfor (int i = 0; i < n; i++) for (int j = 0; j < n; j++) {\n"
            "    ll x; cin >> x;\n    if (i == j) a += x;\n    if (i + j == n - 1) b += x;\n}\n"
            'cout << a << " " << b << "\\n";\n',
            go="n := int(num())\nvar a, b int64\nfor i := 0; i < n; i++ {\n    for j := 0; j < n; j++ {\n"
            "        x := num()\n"
            "        if i == j {\n            a += x\n        }\n        if i+j == n-1 {\n            b += x\n"
            "        }\n    }\n}\n"
            "fmt.Fprintln(out, a, b)\n",
            rust="let n = num!();\nlet (mut a, mut b) = (0i64, 0i64);\nfor i in 0..n { for j in 0..n {\n"
            "    let x = num!();\n"
            "    if i == j { a += x; }\n    if i + j == n - 1 { b += x; }\n} }\n"
            'writeln!(out, "{} {}", a, b).unwrap();\n',
            javascript="const n = num();\nlet a = 0, b = 0;\n"
            "for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {\n"
            "  const x = num();\n  if (i === j) a += x;\n  if (i + j === n - 1) b += x;\n}\n"
            "out.push(`${a} ${b}`);\n",
            java="int n = (int) num();\nlong a = 0, b = 0;\nfor (int i = 0; i < n; i++) for (int j = 0; j < n; j++) {\n"
            "    long x = num();\n    if (i == j) a += x;\n    if (i + j == n - 1) b += x;\n}\n"
            "out.append(a).append(' ').append(b).append('\\n');\n",
        ),
    ),
)


def _with_c(name: str) -> ProgramProblem:
    c_problem = C_PROBLEMS[name]
    return dataclasses.replace(c_problem, references={**_FROM_C[name], **c_problem.references})


def _in_every_language(problems: tuple[ProgramProblem, ...]) -> tuple[ProgramProblem, ...]:
    for problem in problems:
        problem.require_languages(LANGUAGE_NAMES)
    return problems


PROBLEMS: tuple[ProgramProblem, ...] = _in_every_language((*(_with_c(name) for name in _FROM_C), *_NEW))
PROBLEMS_BY_NAME = {problem.name: problem for problem in PROBLEMS}
