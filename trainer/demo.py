"""`verifarm demo`: the loop teaching the policy lengths it has never seen solved, on one machine.

Pre-trains the tiny MoE policy on additions of at most `gold_digits` digits (the gold data; written units first,
with coupled positions by default), starts a private Redis and a Celery worker pool, then lets the daemon's
frontier curriculum (trainer/frontier.py) run rounds: a campaign one and two digits past the frontier, training on the
verified samples of every round interleaved with pre-training, and a held-out evaluation at every length, which
moves the frontier. Prints pass@1 per round and length and saves a PNG of those curves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from verifarm.settings import load_settings
from verifarm.trainer.config import FrontierConfig, TrainerConfig
from verifarm.trainer.corpus import CorpusConfig
from verifarm.trainer.schedule import ScheduleConfig

if TYPE_CHECKING:
    from verifarm.trainer.frontier import FrontierRound


@dataclass(frozen=True)
class DemoConfig:
    """The demo's embedded defaults (measured for the tiny policy on two cores) and a quick variant for tests."""

    seed: int = 0
    position: str = "coupled"
    answer_order: str = "units_first"
    solution: str = "direct"
    gold_digits: int = 3
    target_digits: int = 8
    # About one epoch of the pre-training: 12000 documents seen 8 times left 3 digits at 0% (benchmarks/README.md).
    corpus_documents: int = 64000
    # 2400 steps of 64 at 2e-3 (304 s at rest on 2 cores) leave the policy at 100% on its 3-digit gold data and 53%
    # on 4 digits, the foothold the rounds need; 1000 steps at 3e-3 left 6% on 3 digits and nothing to build on
    # (both measured with this corpus, benchmarks/README.md).
    pretrain_steps: int = 2400
    pretrain_seconds: float = 420.0  # a cap: a busy machine stops pre-training early rather than run long
    pretrain_batch_size: int = 64
    pretrain_learning_rate: float = 2e-3
    # A round rolls out 64 tasks x 4 one and two digits past the frontier and trains 60 steps at 5e-4: one digit
    # past only, 5 digits stalled near 44% for 26 rounds and no 6-digit sample ever passed; at 1e-3 and 40 steps
    # pass@1 swung by 20 points between rounds (benchmarks/README.md, the demo's section).
    rounds: int = 60  # at most: the time budget ends the demo first on 2 cores
    reach: int = 2
    tasks_per_round: int = 64
    samples_per_task: int = 4
    temperature: float = 0.5
    steps_per_round: int = 60
    threshold: float = 0.9
    eval_tasks: int = 32
    learning_rate: float = 5e-4
    batch_size: int = 32
    workers: int = 2  # worker pool processes; 0 rolls out in this process, without a broker
    round_timeout_seconds: float = 600.0
    # The whole demo, pre-training included: rounds stop starting once it is spent (under 15 minutes on 2 cores).
    time_budget_seconds: float = 840.0

    def __post_init__(self) -> None:
        for name in ("rounds", "corpus_documents", "pretrain_steps", "pretrain_batch_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        for name in ("pretrain_seconds", "time_budget_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        self.trainer_config()  # the curriculum and corpus settings are checked where they are defined

    @classmethod
    def quick(cls) -> DemoConfig:
        """Two short rounds from a 1-digit gold corpus, for the end-to-end test."""
        return cls(
            gold_digits=1,
            target_digits=3,
            corpus_documents=400,
            pretrain_steps=60,
            pretrain_seconds=60.0,
            pretrain_batch_size=32,
            rounds=2,
            tasks_per_round=16,
            samples_per_task=2,
            steps_per_round=6,
            eval_tasks=8,
            batch_size=16,
            workers=1,
            time_budget_seconds=600.0,
        )

    @property
    def env_options(self) -> dict:
        return {"answer_order": self.answer_order, "solution": self.solution}

    def trainer_config(self):
        curriculum = FrontierConfig(
            env_options=self.env_options,
            gold_digits=self.gold_digits,
            target_digits=self.target_digits,
            tasks_per_round=self.tasks_per_round,
            samples_per_task=self.samples_per_task,
            temperature=self.temperature,
            steps_per_round=self.steps_per_round,
            threshold=self.threshold,
            reach=self.reach,
            eval_tasks=self.eval_tasks,
            max_rounds=self.rounds,
        )
        return TrainerConfig(
            corpus=CorpusConfig(
                seed=self.seed,
                arithmetic_max_digits=self.gold_digits,
                arithmetic_documents=self.corpus_documents,
                arithmetic_options=self.env_options,
            ),
            schedule=ScheduleConfig(1, 1, {"rft": 1.0}),
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            warmup_steps=10,
            max_seq_len=curriculum.max_new_tokens(self.target_digits) + 2 * self.target_digits + 24,
            seed=self.seed,
            curriculum=curriculum,
        )


def run_demo(config: DemoConfig, home: Path, say: Callable[[str], None] = print) -> list[FrontierRound]:
    """The whole demo in `home` (a previous demo's folder is wiped first); returns one entry per round, round 0
    being the pre-trained policy."""
    # deferred: torch, the store and Celery load when the demo runs, not on every `verifarm` command
    import torch

    from verifarm.policy.training import TrainConfig
    from verifarm.rollout.orchestration import LocalFarm
    from verifarm.trainer.corpus import build_corpus
    from verifarm.trainer.daemon import ContinualTrainer
    from verifarm.trainer.frontier import publish_gold_policy, run_frontier

    started = time.perf_counter()
    trainer_config = config.trainer_config()
    torch.set_num_threads(trainer_config.torch_threads)
    with LocalFarm.fresh(home) as farm:
        corpus = build_corpus(trainer_config.corpus)
        # Before the pool starts: pre-training has a time cap, and starting workers would take CPU from it.
        publish_gold_policy(
            farm.registry,
            corpus,
            config.position,
            TrainConfig(
                steps=config.pretrain_steps,
                max_seconds=config.pretrain_seconds,
                batch_size=config.pretrain_batch_size,
                learning_rate=config.pretrain_learning_rate,
                warmup_steps=30,
                max_length=trainer_config.max_seq_len,
                seed=config.seed,
            ),
            say,
            seed=config.seed,
        )
        if config.workers > 0:
            pool = farm.start_pool(config.workers)
            say(f"worker pool: {config.workers} process(es), private Redis {pool.broker_url}")
        else:
            say("rollouts in this process (no worker pool)")
        trainer = ContinualTrainer(
            trainer_config, farm.registry, farm.store, farm.home / "trainer" / "state", corpus=corpus
        )
        deadline = time.monotonic() + config.time_budget_seconds - (time.perf_counter() - started)
        state = run_frontier(trainer, farm.campaigns(config.round_timeout_seconds), say, deadline=deadline)
    history = state.history
    plot_path = plot_rounds(history, home / "pass_at_1.png", config)
    (home / "demo_results.json").write_text(json.dumps([asdict(entry) for entry in history], indent=2))
    say(summary_table(history))
    say(f"plot: {plot_path}\ndemo finished in {time.perf_counter() - started:.0f}s")
    return history


def learned_lengths(history: list[FrontierRound]) -> list[int]:
    """Lengths the starting policy had at 0% held-out pass@1 and the final one at 50% or more."""
    first, last = history[0].pass_at_1, history[-1].pass_at_1
    return [d for d in sorted(first) if first[d] == 0.0 and last.get(d, 0.0) >= 0.5]


def summary_table(history: list[FrontierRound]) -> str:
    lengths = sorted(history[0].pass_at_1)
    header = "round  version  frontier  " + "  ".join(f"{f'd{d}':>6}" for d in lengths) + "  minutes"
    lines = ["held-out pass@1 (greedy) by length (digits):", header]
    for entry in history:
        cells = "  ".join(f"{entry.pass_at_1.get(d, float('nan')):6.1%}" for d in lengths)
        version = f"v{entry.version}" if entry.version is not None else "-"
        lines.append(f"{entry.round:>5}  {version:>7}  {entry.frontier:>8}  {cells}  {entry.seconds / 60:7.1f}")
    learned = learned_lengths(history)
    lines.append(
        "lengths learned by the loop (0% at the start, >= 50% at the end): "
        + (", ".join(f"{d} digits" for d in learned) if learned else "none")
    )
    return "\n".join(lines)


def plot_rounds(history: list[FrontierRound], path: Path, config: DemoConfig) -> Path:
    """pass@1 against round, one curve per length (Agg backend: no display needed)."""
    # deferred: matplotlib loads only to draw the plot, not on every `verifarm` command
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    lengths = sorted(history[0].pass_at_1)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    rounds = [entry.round for entry in history]
    for digits in lengths:
        axes.plot(
            rounds, [100 * e.pass_at_1.get(digits, float("nan")) for e in history], marker="o", label=f"{digits}-digit"
        )
    axes.set_xlabel("round (0 = pre-trained policy)")
    axes.set_ylabel("held-out pass@1, greedy (%)")
    axes.set_ylim(-2, 102)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole rounds, a readable number of ticks
    axes.set_title(f"verifarm: the frontier past {config.gold_digits}-digit gold data ({config.position} positions)")
    axes.grid(alpha=0.3)
    axes.legend(title="addition")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def demo(
    quick: bool = typer.Option(False, "--quick", help="two short rounds of a minute or two (the test uses it)"),
    rounds: int | None = typer.Option(None, help="frontier rounds at most (default 60, within the time budget)"),
    home: Path | None = typer.Option(None, help="folder for the demo's farm (default VERIFARM_HOME/demo); wiped"),
    seed: int = typer.Option(0, help="seed of the model init, the corpus and the campaigns"),
    workers: int | None = typer.Option(None, help="worker pool processes (default 2; 0: roll out in-process)"),
) -> None:
    """Run the loop end to end: pre-train on short additions, then rounds that extend the lengths; plot pass@1."""
    config = DemoConfig.quick() if quick else DemoConfig()
    config = replace(
        config, seed=seed, rounds=rounds or config.rounds, workers=config.workers if workers is None else workers
    )
    run_demo(config, home or load_settings().home / "demo")
