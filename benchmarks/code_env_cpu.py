"""CPU per step of the Python code envs on reference solutions: the sandboxed run's own CPU (driver and candidate,
from the run's rusage) and this process's CPU, besides steps/s.

CPU per step barely moves when other jobs load the machine, unlike steps/s, so it is the figure to compare two
versions of the harness on a shared machine (run this script once per version, alternately, a few times).

    python benchmarks/code_env_cpu.py            # 80 PythonFunction tasks (difficulty 3), the 164 HumanEval problems
"""

from __future__ import annotations

import argparse
import time
import warnings

import verifarm.sandbox.harness as harness
from verifarm.envs.catalog import get_family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-function-steps", type=int, default=80)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    run_cpu: list[float] = []
    judge = harness.judge

    def observed_judge(result, sentinel):  # every sandboxed run of check_python passes through here
        run_cpu.append(result.cpu_seconds)
        return judge(result, sentinel)

    harness.judge = observed_judge
    for env_id, difficulty, steps in (
        ("verifarm/PythonFunction-v0", 3, args.python_function_steps),
        ("verifarm/HumanEval-v0", 1, 164),
    ):
        family = get_family(env_id)
        warm_up = family.generate(10_000, difficulty)
        family.verify(warm_up, warm_up.reference)  # starts the sandbox backend (warm containers)
        tasks = [family.generate(seed, difficulty) for seed in range(steps)]
        run_cpu.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        passed = sum(family.verify(task, task.reference).passed for task in tasks)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"{env_id:<28} {steps:>4} steps {passed:>4} passed {steps / wall:7.1f} steps/s  "
            f"sandbox CPU {1000 * sum(run_cpu) / steps:5.2f} ms/step  host CPU {1000 * cpu / steps:5.2f} ms/step",
            flush=True,
        )


if __name__ == "__main__":
    main()
