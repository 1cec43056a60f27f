"""`verifarm demo`: the whole loop on one machine, on embedded defaults.

Pre-trains the tiny MoE policy briefly on worked additions, starts a private Redis and a Celery worker pool,
then runs rounds: a rollout campaign on the addition env (policy "latest"), the continual trainer on the
verified rollouts it produced (interleaved with pre-training steps), and a held-out evaluation of the new
version. Prints pass@1 per round and difficulty and saves a PNG of those curves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from verifarm.settings import load_settings
from verifarm.trainer.config import RoundsConfig
from verifarm.trainer.corpus import CorpusConfig

if TYPE_CHECKING:
    from verifarm.trainer.rounds import RoundResult


@dataclass(frozen=True)
class DemoConfig(RoundsConfig):
    """The demo's settings: the rounds' embedded defaults, and a quick variant for the end-to-end test."""

    @classmethod
    def quick(cls) -> DemoConfig:
        """A two-round run of a minute or two, for the end-to-end test."""
        base = cls()
        return replace(
            base,
            pretrain_steps=60,
            pretrain_seconds=60.0,
            pretrain_max_digits=1,
            rounds=2,
            campaign_tasks=24,
            samples_per_task=4,
            campaign_max_digits=2,
            eval_difficulties=(1, 2),
            eval_tasks=12,
            workers=1,
            trainer=replace(
                base.trainer, corpus=CorpusConfig(arithmetic_max_digits=1, arithmetic_documents=400), batch_size=16
            ),
        )


def run_demo(config: DemoConfig, home: Path, say: Callable[[str], None] = print) -> list[RoundResult]:
    """The whole demo in `home` (a previous demo's folder is wiped first); returns one result per round,
    round 0 being the pre-trained policy."""
    # deferred: torch, the store and Celery load when the demo runs, not on every `verifarm` command
    from verifarm.trainer.rounds import run_in_fresh_farm, summary_table

    started = time.perf_counter()
    results = run_in_fresh_farm(config, home, say)
    plot_path = plot_rounds(results, home / "pass_at_1.png")
    (home / "demo_results.json").write_text(json.dumps([r.__dict__ for r in results], indent=2))
    say(summary_table(results))
    say(f"plot: {plot_path}\ndemo finished in {time.perf_counter() - started:.0f}s")
    return results


def plot_rounds(results: list[RoundResult], path: Path) -> Path:
    """pass@1 against round, one curve per difficulty (Agg backend: no display needed)."""
    # deferred: matplotlib loads only to draw the plot, not on every `verifarm` command
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    difficulties = sorted({d for r in results for d in r.pass_at_1})
    figure, axes = plt.subplots(figsize=(7, 4.5))
    rounds = [r.round for r in results]
    for digits in difficulties:
        axes.plot(
            rounds, [100 * r.pass_at_1.get(digits, float("nan")) for r in results], marker="o", label=f"{digits}-digit"
        )
    axes.set_xlabel("round (0 = pre-trained policy)")
    axes.set_ylabel("held-out pass@1, greedy (%)")
    axes.set_ylim(-2, 102)
    axes.set_xticks(rounds)
    axes.set_title("verifarm: expert iteration on addition")
    axes.grid(alpha=0.3)
    axes.legend(title="addition")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def demo(
    quick: bool = typer.Option(False, "--quick", help="a two-round run of a minute or two (the test uses it)"),
    rounds: int | None = typer.Option(None, help="campaign + training rounds (default 8)"),
    home: Path | None = typer.Option(None, help="folder for the demo's farm (default VERIFARM_HOME/demo); wiped"),
    seed: int = typer.Option(0, help="seed of the model init, the corpus and the campaigns"),
    workers: int | None = typer.Option(None, help="worker pool processes (default 2; 0: roll out in-process)"),
) -> None:
    """Run the loop end to end: pre-train, roll out, verify, train, evaluate, in rounds; plot pass@1."""
    config = DemoConfig.quick() if quick else DemoConfig()
    config = replace(
        config, seed=seed, rounds=rounds or config.rounds, workers=config.workers if workers is None else workers
    )
    run_demo(config, home or load_settings().home / "demo")
