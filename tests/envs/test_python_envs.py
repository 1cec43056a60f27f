"""PythonFunction and HumanEval through the sandbox: references pass, wrong and forged completions fail."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import pytest

import verifarm.envs  # noqa: F401  (registers the ids)
from verifarm.envs.code_completion import assemble_python, last_fenced_block
from verifarm.envs.human_eval import HumanEvalFamily
from verifarm.envs.python_function import TEMPLATES, PythonFunctionFamily, tier_for

# Completions that try to pass without solving: exit early, print a pass line, forge equality, kill the judge,
# tamper with builtins, or read the verdict channel.
FORGERIES = [
    "    import sys\n    sys.exit(0)\n",
    "    import os\n    os._exit(0)\n",
    "    print('PASS')\n    print('all tests passed')\n    return None\n",
    "    class Anything:\n        def __eq__(self, other):\n            return True\n    return Anything()\n",
    "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n",
    "    import builtins\n    builtins.AssertionError = type('Quiet', (Exception,), {})\n    return None\n",
    "    import os\n    os.write(1, b'PASS\\n')\n    os.write(2, b'PASS\\n')\n    return None\n",
    "    raise SystemExit(0)\n",
    "    import sys\n    sys.modules['builtins'].type = lambda *a: object\n    return 0\n",
    "    while True:\n        pass\n",
]


@pytest.fixture(scope="module")
def python_family() -> PythonFunctionFamily:
    return PythonFunctionFamily()


@pytest.fixture(scope="module")
def human_eval() -> HumanEvalFamily:
    return HumanEvalFamily()


def test_every_template_tier_is_reachable_and_renders() -> None:
    assert {tier_for(d) for d in range(1, 6)} == {t.tier for t in TEMPLATES}
    family = PythonFunctionFamily()
    seen = {family.generate(seed, d).data["template"] for d in range(1, 6) for seed in range(120)}
    assert seen == {t.name for t in TEMPLATES}


def test_python_function_references_pass_across_seeds(python_family: PythonFunctionFamily) -> None:
    tasks = [python_family.generate(seed, d) for d in range(1, 6) for seed in range(5)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda t: python_family.verify(t, t.reference), tasks))
    for task, verdict in zip(tasks, verdicts):
        assert verdict.passed and verdict.reward == 1.0, (task.task_id, verdict)
        assert verdict.details["sandbox_backend"] in ("docker", "bwrap", "process")


def test_python_function_generation_is_deterministic() -> None:
    first, second = PythonFunctionFamily(), PythonFunctionFamily()
    assert [first.generate(s, 3) for s in range(10)] == [second.generate(s, 3) for s in range(10)]


def test_wrong_and_forged_python_completions_fail(python_family: PythonFunctionFamily) -> None:
    task = python_family.generate(1, 1)
    completions = ["    return None\n", "    return 0\n", *FORGERIES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda c: python_family.verify(task, c), completions))
    for completion, verdict in zip(completions, verdicts):
        assert verdict.reward == 0.0 and not verdict.passed and not verdict.infra_error, (completion, verdict)


def test_reasoning_then_fenced_function_passes(python_family: PythonFunctionFamily) -> None:
    task = python_family.generate(4, 2)
    name = task.data["entry_point"]
    signature = next(line for line in task.prompt.splitlines() if line.startswith("def "))
    whole = f"Let me think.\n```python\n{signature}\n{task.reference}```\nDone."
    assert python_family.verify(task, whole).passed
    fenced_body = f"The body:\n```python\n{task.reference}```\n"
    assert python_family.verify(task, fenced_body).passed
    assert name in assemble_python(task.prompt, whole, name)


def test_fence_extraction() -> None:
    assert last_fenced_block("no code") is None
    assert last_fenced_block("```python\na = 1\n```\ntext\n```py\nb = 2\n```") == "b = 2\n"
    assert last_fenced_block("```c\nint x;\n") == "int x;\n"  # cut off before the closing fence


@pytest.mark.parametrize(
    "completion, reason",
    [
        ("", "empty completion"),
        ("   \n", "empty completion"),
        ("    return (\n", "syntax error"),
        ("\x00\x01\x02 binary \xff", "syntax error"),
        ("def broken(:\n", "syntax error"),
        ("    return 1\n" * 20_000, "too long"),
    ],
)
def test_malformed_python_completions(python_family: PythonFunctionFamily, completion: str, reason: str) -> None:
    verdict = python_family.verify(python_family.generate(0, 1), completion)
    assert verdict.reward == 0.0 and not verdict.passed and reason in verdict.reason, verdict


@pytest.mark.slow
def test_all_164_human_eval_references_pass_through_the_env() -> None:
    def run(seed: int) -> tuple[str, float, dict]:
        env = gym.make("verifarm/HumanEval-v0")
        _, info = env.reset(seed=seed)
        _, reward, terminated, _, step_info = env.step(env.unwrapped.task.reference)
        assert terminated
        return info["task_id"], reward, step_info

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(164)))
    assert len({task_id for task_id, _, _ in results}) == 164
    failed = [(task_id, info["reason"]) for task_id, reward, info in results if reward != 1.0]
    assert not failed, failed


def test_human_eval_wrong_and_forged_completions_fail(human_eval: HumanEvalFamily) -> None:
    cases = [
        (seed, completion) for seed in (0, 11, 32, 100, 163) for completion in ("    return None\n", *FORGERIES[:5])
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda c: human_eval.verify(human_eval.generate(c[0]), c[1]), cases))
    for case, verdict in zip(cases, verdicts):
        assert verdict.reward == 0.0 and not verdict.infra_error, (case, verdict)


def test_human_eval_accepts_a_fenced_whole_function(human_eval: HumanEvalFamily) -> None:
    task = human_eval.generate(2)  # truncate_number
    completion = (
        "The fractional part is x minus its floor.\n```python\n"
        "def truncate_number(number: float) -> float:\n    return number % 1.0\n```"
    )
    assert human_eval.verify(task, completion).passed
    assert human_eval.generate(2 + 164) == task


def test_sandbox_that_cannot_start_is_an_infra_error_not_a_fail() -> None:
    script = (
        "from verifarm.envs.python_function import PythonFunctionFamily\n"
        "from verifarm.envs.c_program import CProgramFamily\n"
        "for family in (PythonFunctionFamily(backend='docker'), CProgramFamily(backend='docker')):\n"
        "    task = family.generate(0, 1)\n"
        "    verdict = family.verify(task, task.reference)\n"
        "    print(verdict.infra_error, verdict.reward, verdict.details['sandbox_backend'])\n"
    )
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["True 0.0 docker", "True 0.0 docker"]


def test_a_completion_that_reads_the_hidden_tests_fails(python_family: PythonFunctionFamily) -> None:
    """The hidden tests used to lie beside the solution as tests.py; now they are nowhere the candidate can read."""
    task = python_family.generate(3, 3)
    name = task.data["entry_point"]
    reader = (
        f"```python\ndef {name}(*args):\n    import ast, os\n"
        "    for path in ('tests.py', '/tmp/tests.py', '../tests.py'):\n"
        "        if os.path.exists(path):\n"
        "            for node in ast.walk(ast.parse(open(path).read())):\n"
        "                if isinstance(node, ast.Tuple) and len(node.elts) == 2:\n"
        "                    try:\n                        given, expected = ast.literal_eval(node)\n"
        "                    except ValueError:\n                        continue\n"
        "                    if given == args:\n                        return expected\n"
        "    return None\n```\n"
    )
    verdict = python_family.verify(task, reader)
    assert not verdict.passed and not verdict.infra_error, verdict
    assert verdict.details["harness_reason"].startswith("assertion failed"), verdict.details


def test_human_eval_helpers_cannot_be_replaced(human_eval: HumanEvalFamily) -> None:
    """HumanEval/38's tests encode with the prompt's encode_cyclic: an identity encoder of the candidate's is ignored."""
    task = human_eval.generate(38)
    forged = "```python\ndef encode_cyclic(s: str):\n    return s\n\n\ndef decode_cyclic(s: str):\n    return s\n```\n"
    verdict = human_eval.verify(task, forged)
    assert not verdict.passed and not verdict.infra_error, verdict
    assert human_eval.verify(task, task.reference).passed


def test_sandboxed_verdicts_record_the_version_and_the_harness_reason(python_family: PythonFunctionFamily) -> None:
    task = python_family.generate(0, 1)
    passed, failed = python_family.verify(task, task.reference), python_family.verify(task, "    return None\n")
    for verdict in (passed, failed):
        assert verdict.details["verifier_version"] == python_family.verifier_version == "python-function-2"
        assert "tests readable by candidate: denied" in verdict.details["harness"]
    assert passed.details["harness_reason"] == "all tests passed"
    assert failed.details["harness_reason"].startswith("assertion failed")
