"""Answers per second that a reasoning-gym dataset's scorer child scores, for plain answers and for answers that
are code (harmless here), both wrong, so neither takes the in-process shortcut for the oracle's own string.

    python benchmarks/reasoning_gym_scoring.py --dataset spiral_matrix --plain 300 --code 300

Steps alternate between the two kinds in blocks, so load on a shared machine hits both alike; each block starts
with one untimed answer, so a block does not pay for a child start-up the other kind caused.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from verifarm.envs.reasoning_gym_adapter import ReasoningGymFamily

PLAIN = "<answer>1 2 3</answer>"
CODE = "<answer>[len(str(abs(-3)))]</answer>"
BLOCKS = 5


def scorer_cpu_seconds(family: ReasoningGymFamily) -> float:
    """CPU of the scorer child so far, its reaped forks included (Linux /proc: utime, stime, cutime, cstime)."""
    process = family._scorer._process
    if process is None:
        return 0.0
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(family: ReasoningGymFamily, completion: str, steps: int) -> tuple[float, float, int]:
    """Wall seconds and CPU seconds (this process and the scorer child) for ``steps`` wrong answers."""
    task = family.generate(0, 1)
    family.verify(task, completion)  # untimed: waits out a child the other kind left starting, if any
    child_before = scorer_cpu_seconds(family)
    started, cpu_started = time.perf_counter(), time.process_time()
    wrong = 0
    for _ in range(steps):
        verdict = family.verify(task, completion)
        assert not verdict.infra_error, verdict
        wrong += not verdict.passed
    assert wrong == steps
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    child_after = scorer_cpu_seconds(family)  # a child retired in between (an older design) is not counted
    return seconds, cpu + max(0.0, child_after - child_before), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="spiral_matrix")
    parser.add_argument("--plain", type=int, default=300, help="plain answers in all")
    parser.add_argument("--code", type=int, default=300, help="code answers in all")
    args = parser.parse_args()
    if args.plain < BLOCKS or args.code < BLOCKS:
        raise SystemExit(f"--plain and --code must be at least {BLOCKS} (one per block)")
    family = ReasoningGymFamily(args.dataset)
    try:
        family.verify(family.generate(0, 1), PLAIN)  # starts the scorer child
        totals = {"plain": [0.0, 0.0, 0], "code": [0.0, 0.0, 0]}
        for _ in range(BLOCKS):
            for kind, completion, steps in (("plain", PLAIN, args.plain), ("code", CODE, args.code)):
                for index, value in enumerate(measure(family, completion, steps // BLOCKS)):
                    totals[kind][index] += value
        for kind, (seconds, cpu, done) in totals.items():
            print(
                f"{args.dataset} {kind} answers: {done / seconds:,.1f}/s ({1000 * seconds / done:.2f} ms each, "
                f"{1000 * cpu / done:.2f} ms CPU each, {done} answers)"
            )
    finally:
        family.close()


if __name__ == "__main__":
    main()
