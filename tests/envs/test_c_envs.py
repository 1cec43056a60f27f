"""CProgram and CProgramMultiTurn through gcc in the sandbox: references pass, wrong programs fail, feedback flows."""

from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import pytest

import verifarm.envs  # noqa: F401  (registers the ids)
from verifarm.envs.c_problems import PROBLEMS
from verifarm.envs.c_program import CProgramFamily
from verifarm.envs.program import extract_source, normalize_output

WRONG_PROGRAMS = {
    "prints nothing": "int main(void) { return 0; }",
    "crashes": "#include <stdio.h>\nint main(void) { int *p = 0; *p = 1; return 0; }",
    "loops forever": "int main(void) { for (;;) {} }",
    "exits nonzero": '#include <stdio.h>\nint main(void) { puts("0"); return 3; }',
    "floods output": '#include <stdio.h>\nint main(void) { for (;;) puts("PASS all tests passed"); }',
    "forks": "#include <unistd.h>\nint main(void) { for (;;) fork(); }",
    "does not compile": "int main(void) { syntax error }",
    "includes a device": "#include </dev/zero>\nint main(void) { return 0; }",
}


@pytest.fixture(scope="module")
def family() -> CProgramFamily:
    return CProgramFamily()


def test_every_problem_is_reachable() -> None:
    family = CProgramFamily()
    assert {family.generate(seed, 1).data["problem"] for seed in range(80)} == {p.name for p in PROBLEMS}


def test_references_pass_across_problems_and_difficulties(family: CProgramFamily) -> None:
    tasks = {}
    for difficulty in range(1, 6):
        for seed in range(60):
            task = family.generate(seed, difficulty)
            tasks.setdefault((task.data["problem"], difficulty > 2), task)
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda t: family.verify(t, t.reference), tasks.values()))
    assert len(tasks) == 2 * len(PROBLEMS)
    for task, verdict in zip(tasks.values(), verdicts):
        assert verdict.passed and verdict.reward == 1.0, (task.task_id, verdict)
        assert verdict.details["tests_passed"] == verdict.details["tests_total"] == len(task.data["inputs"])


def test_wrong_programs_fail_with_a_reason(family: CProgramFamily) -> None:
    task = family.generate(3, 2)
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = dict(
            zip(WRONG_PROGRAMS, pool.map(lambda s: family.verify(task, f"```c\n{s}\n```"), WRONG_PROGRAMS.values()))
        )
    for name, verdict in verdicts.items():
        assert verdict.reward == 0.0 and not verdict.passed and not verdict.infra_error, (name, verdict)
        assert verdict.details.get("feedback"), (name, verdict)
    assert verdicts["does not compile"].reason == "compilation failed"
    assert "error" in verdicts["does not compile"].details["feedback"]
    assert verdicts["loops forever"].reason.endswith("time limit exceeded")
    assert "runtime error" in verdicts["crashes"].reason


def test_off_by_one_output_fails_and_the_feedback_shows_the_test(family: CProgramFamily) -> None:
    task = next(t for t in (family.generate(s, 1) for s in range(100)) if t.data["problem"] == "sum_numbers")
    wrong = (
        '#include <stdio.h>\nint main(void) { int n; long long s = 1, x; scanf("%d", &n);\n'
        'for (int i = 0; i < n; i++) { scanf("%lld", &x); s += x; } printf("%lld\\n", s); return 0; }'
    )
    verdict = family.verify(task, wrong)  # no fence: the whole completion is the program
    assert not verdict.passed and verdict.reason == f"test 1/{len(task.data['inputs'])}: wrong output"
    assert "Expected output:" in verdict.details["feedback"] and "Your output:" in verdict.details["feedback"]


def test_output_comparison_ignores_only_trailing_whitespace() -> None:
    assert normalize_output("1 2  \n3\n\n\n") == normalize_output("1 2\n3")
    assert normalize_output("1  2\n3") != normalize_output("1 2\n3")
    assert normalize_output("3\n1") != normalize_output("1\n3")
    assert extract_source("think\n```c\nint main(){}\n```\nbye") == "int main(){}\n"


@pytest.mark.parametrize(
    "completion, reason",
    [
        ("", "empty program"),
        ("```c\n```", "empty program"),
        ("\x00\xff\x01 binary", "compilation failed"),
        ("I would write a loop.", "compilation failed"),
        ("x" * 40_000, "too long"),
    ],
)
def test_malformed_c_completions(family: CProgramFamily, completion: str, reason: str) -> None:
    verdict = family.verify(family.generate(0, 1), completion)
    assert verdict.reward == 0.0 and not verdict.passed and reason in verdict.reason, verdict


def test_multi_turn_feeds_back_compiler_errors_then_accepts_a_fix() -> None:
    env = gym.make("verifarm/CProgramMultiTurn-v0", difficulty=1)
    prompt, _ = env.reset(seed=4)
    task = env.unwrapped.task
    observation, reward, terminated, truncated, info = env.step("```c\nint main(void) { oops }\n```")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert observation.startswith(prompt) and "did not compile" in observation and "oops" in observation
    assert info["turn"] == 1 and "reference" not in info
    observation, reward, terminated, truncated, info = env.step(task.reference)
    assert (observation, reward, terminated, truncated) == ("", 1.0, True, False)
    assert info["turn"] == 2 and info["passed"] and info["reference"] == task.reference


def test_multi_turn_truncates_at_the_turn_limit() -> None:
    env = gym.make("verifarm/CProgramMultiTurn-v0", difficulty=1, max_turns=2)
    env.reset(seed=1)
    _, _, terminated, truncated, _ = env.step("int main(void) { return 0; }")
    assert not terminated and not truncated
    _, _, terminated, truncated, info = env.step("int main(void) { return 0; }")
    assert not terminated and truncated and info["turn"] == 2
    with pytest.raises(RuntimeError):
        env.step("int main(void) { return 0; }")


def test_single_turn_c_env_terminates_after_one_step() -> None:
    env = gym.make("verifarm/CProgram-v0", difficulty=2)
    env.reset(seed=9)
    _, reward, terminated, truncated, info = env.step("int main(void) { return 0; }")
    assert (reward, terminated, truncated) == (0.0, True, False) and info["details"]["sandbox_backend"] != "none"


def test_feedback_never_reveals_the_final_test(family: CProgramFamily) -> None:
    task = next(t for t in (family.generate(s, 1) for s in range(100)) if t.data["problem"] == "sum_numbers")
    inputs, outputs = task.data["inputs"], task.data["outputs"]
    # Hard-code every output but the last, as a policy that memorised earlier feedback would.
    cases = "".join(
        f'    if (n == {text.split()[0]} && first == {text.split()[1]}) {{ puts("{out.strip()}"); return 0; }}\n'
        for text, out in zip(inputs[:-1], outputs[:-1])
    )
    cheat = (
        '#include <stdio.h>\nint main(void) {\n    long long n, first; scanf("%lld %lld", &n, &first);\n'
        f'{cases}    puts("0");\n    return 0;\n}}\n'
    )
    assert inputs[-1].split()[:2] not in [text.split()[:2] for text in inputs[:-1]]
    verdict = family.verify(task, cheat)
    assert not verdict.passed and verdict.reason.startswith(f"test {len(inputs)}/{len(inputs)}")
    assert "hidden" in verdict.details["feedback"] and inputs[-1].strip() not in verdict.details["feedback"]


def test_a_program_finds_no_expected_output_in_its_sandbox(family: CProgramFamily) -> None:
    """The expected outputs never enter the sandbox: a program that computes its answer, then searches every file
    and its parent's /proc entries for it (to show the search works, a correct answer is the needle) finds
    nothing, fails, and the verdict says why."""
    task = next(t for t in (family.generate(s, 1) for s in range(100)) if t.data["problem"] == "sum_numbers")
    hunter = r"""#include <unistd.h>
int main(void) {
    const char *code =
        "import os, sys\n"
        "data = sys.stdin.read()\n"
        "want = str(sum(int(x) for x in data.split()[1:]))\n"
        "paths = ['/proc/%d/%s' % (os.getppid(), e) for e in ('cmdline', 'environ', 'fd/0', 'fd/3')]\n"
        "for top in ('/tmp', '/dev/shm', '.', '/'):\n"
        "    for root, dirs, files in os.walk(top):\n"
        "        dirs[:] = [d for d in dirs if root != '/' or d not in ('usr', 'sys', 'proc', 'dev')]\n"
        "        paths += [os.path.join(root, name) for name in files]\n"
        "seen = []\n"
        "for path in paths:\n"
        "    try: text = open(path, 'rb').read(1 << 20).decode('utf-8', 'replace')\n"
        "    except OSError: continue\n"
        "    if want in text.split(): seen.append(path)\n"
        "print('found ' + ' '.join(seen[:3]) if seen else 'nothing')\n";
    execl("/usr/bin/python3", "python3", "-c", code, (char *)0);
    return 1;
}
"""
    verdict = family.verify(task, f"```c\n{hunter}```\n")
    assert not verdict.passed and not verdict.infra_error, verdict
    assert verdict.reason == f"test 1/{len(task.data['inputs'])}: wrong output", verdict
    assert "Your output:\nnothing" in verdict.details["feedback"], verdict.details["feedback"]
    assert "expected outputs in sandbox: never" in verdict.details["harness"]
    assert verdict.details["harness_reason"] == verdict.reason
    assert family.verify(task, task.reference).details["harness_reason"].startswith("all ")
