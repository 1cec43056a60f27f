"""Rollout quality per sampling path: held-out pass@1 and pass@16 with the exact sampler, + speculative
sampling, + int8 weights and + both, on the same tasks, with each path's difference to the exact path.

pass@1 and pass@k are the unbiased estimates from n samples per task (Chen et al. 2021). The difference to
the exact path is averaged over tasks with a 95% interval from the per-task differences (a paired
comparison: task difficulty cancels out). A path passes when the whole interval lies within --margin points
of zero; an interval wider than that says "undecided: raise --tasks", never "pass". Speculative sampling is
exact by construction, so only its sampling noise shows; int8 weights move the distribution a little.

    python benchmarks/rollout_quality.py --registry ROOT          # newest version and its drafter
    python benchmarks/rollout_quality.py --registry ROOT --tasks 600 --samples 16   # a 1-point interval
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from verifarm.envs.catalog import get_family
from verifarm.trainer.evaluate import pass_at_k

PATHS = ("exact", "+speculative", "+int8", "+both")


def per_task_passes(
    policy, family, tasks, samples: int, temperature: float, max_new_tokens: int, seed: int, batch_tasks: int
) -> list[int]:
    """How many of `samples` completions pass, for each task."""
    correct = []
    for start in range(0, len(tasks), batch_tasks):
        chunk = tasks[start : start + batch_tasks]
        rows = policy.sample(
            [t.prompt for t in chunk],
            n=samples,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            seed=seed + start,
        )
        correct.extend(sum(family.verify(task, c.text).passed for c in row) for task, row in zip(chunk, rows))
    return correct


def interval(differences: list[float]) -> tuple[float, float]:
    """Mean and 95% half-width (normal approximation) of per-task differences."""
    mean = statistics.fmean(differences)
    spread = statistics.stdev(differences) if len(differences) > 1 else float("inf")
    return mean, 1.96 * spread / math.sqrt(len(differences))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default=None, help="checkpoint registry: its newest version and drafter")
    parser.add_argument("--preset", default="tiny", help="random-weight preset when no --registry (a smoke run)")
    parser.add_argument("--env", default="verifarm/Addition-v0")
    parser.add_argument("--difficulty", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=200, help="held-out tasks (default 200)")
    parser.add_argument("--samples", type=int, default=16, help="samples per task, n (default 16)")
    parser.add_argument("--k", type=int, default=16, help="pass@k besides pass@1 (default 16)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--draft-tokens", type=int, default=4)
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--margin", type=float, default=1.0, help="allowed difference in points (default 1)")
    parser.add_argument("--batch-tasks", type=int, default=16, help="tasks per sampling call (default 16)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    if not paths or any(p not in PATHS for p in paths) or "exact" not in paths:
        raise ValueError(f"--paths takes a comma-separated list of {', '.join(PATHS)} including exact")
    if not 1 <= args.k <= args.samples or min(args.tasks, args.batch_tasks, args.threads) < 1:
        raise ValueError("need 1 <= --k <= --samples and --tasks, --batch-tasks, --threads >= 1")
    torch.set_num_threads(args.threads)

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script beside sampling_throughput.py
    from sampling_throughput import load_models, path_policy

    args.checkpoint = None
    model, tokenizer, drafter, source = load_models(args)
    family = get_family(args.env)
    # Seeds far from any campaign's or training run's: held-out tasks.
    tasks = [family.generate(seed=10**9 + args.seed + i, difficulty=args.difficulty) for i in range(args.tasks)]
    print(f"model: {source}")
    print(
        f"{args.tasks} held-out {args.env} tasks at difficulty {args.difficulty}, n={args.samples} samples each "
        f"at temperature {args.temperature}, max_new_tokens={args.max_new_tokens}, k={args.draft_tokens}"
    )

    pass1: dict[str, list[float]] = {}
    passk: dict[str, list[float]] = {}
    for path in paths:
        policy = path_policy(path, model, tokenizer, drafter, args.draft_tokens)
        started = time.perf_counter()
        correct = per_task_passes(
            policy, family, tasks, args.samples, args.temperature, args.max_new_tokens, args.seed, args.batch_tasks
        )
        pass1[path] = [c / args.samples for c in correct]
        passk[path] = [pass_at_k(args.samples, c, args.k) for c in correct]
        print(
            f"  {path:13s} pass@1 {100 * statistics.fmean(pass1[path]):6.2f}  pass@{args.k} "
            f"{100 * statistics.fmean(passk[path]):6.2f}  ({time.perf_counter() - started:.0f}s)",
            flush=True,
        )

    print(f"\ndifference to exact, points (mean ± 95% half-width over tasks); margin {args.margin}")
    for path in paths:
        if path == "exact":
            continue
        cells = []
        for name, metric in (("pass@1", pass1), (f"pass@{args.k}", passk)):
            mean, half = interval([100 * (a - b) for a, b in zip(metric[path], metric["exact"])])
            if abs(mean) + half <= args.margin:
                verdict = "within"
            elif abs(mean) - half > args.margin:
                verdict = "OUTSIDE"
            else:
                verdict = "undecided: raise --tasks"
            cells.append(f"{name} {mean:+.2f} ± {half:.2f} ({verdict})")
        print(f"  {path:13s} " + "   ".join(cells))


if __name__ == "__main__":
    main()
