"""Rounds of expert iteration: sample, then train.

Round 0 is a briefly pre-trained policy; each round then runs a rollout campaign on the gold corpus's env
(policy "latest"), trains the continual trainer on the verified rollouts it produced (interleaved with
pre-training steps) and evaluates the new version on held-out tasks. The demo and the self-improvement
benchmark both run these rounds; where the campaigns run (this process or a worker pool) is the farm's choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from verifarm.policy.model import build_model
from verifarm.policy.registry import CheckpointRegistry
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.tokenizer import build_tokenizer
from verifarm.policy.training import TrainConfig, pretrain
from verifarm.redaction import redact_url
from verifarm.rollout.campaign import CampaignSpec
from verifarm.rollout.orchestration import CampaignRunner, LocalFarm
from verifarm.trainer.config import RoundsConfig
from verifarm.trainer.corpus import Corpus, build_corpus
from verifarm.trainer.daemon import ContinualTrainer
from verifarm.trainer.evaluate import evaluate_policy


@dataclass
class RoundResult:
    round: int
    version: int
    pass_at_1: dict[int, float]  # difficulty -> greedy pass@1 on held-out tasks
    heldout_loss: float | None
    campaign_pass_rate: float | None = None
    records: int = 0
    steps: int = 0
    seconds: float = 0.0


def pretrain_initial_policy(
    config: RoundsConfig, registry: CheckpointRegistry, corpus: Corpus, say: Callable[[str], None]
) -> int:
    """Build the tiny policy, pre-train it on the gold corpus for a short time budget, publish it as v1."""
    tokenizer = build_tokenizer()
    model = build_model(config.preset, len(tokenizer), seed=config.seed)
    metrics = pretrain(
        model,
        tokenizer,
        corpus.train,
        TrainConfig(
            steps=config.pretrain_steps,
            max_seconds=config.pretrain_seconds,
            batch_size=config.pretrain_batch_size,
            learning_rate=config.pretrain_learning_rate,
            max_length=config.trainer.max_seq_len,
            seed=config.seed,
        ),
    )
    say(
        f"pre-trained the {config.preset} policy for {metrics['seconds']:.0f}s ({metrics['steps']:.0f} steps, "
        f"final loss {metrics['final_loss']:.3f}) on worked additions of up to {config.pretrain_max_digits} digits"
    )
    model.eval()
    return registry.publish(model, tokenizer, {"source": "demo-pretrain", "pretrain": metrics})


def farm_trainer(config: RoundsConfig, farm: LocalFarm, corpus: Corpus) -> ContinualTrainer:
    """The continual trainer on the farm's registry and store, its state in the farm's folder."""
    return ContinualTrainer(config.trainer, farm.registry, farm.store, farm.home / "trainer" / "state", corpus=corpus)


def evaluate_version(config: RoundsConfig, trainer: ContinualTrainer, round_index: int) -> RoundResult:
    """Greedy pass@1 of the trainer's current version on held-out tasks, recorded in the store's metrics."""
    trainer.model.eval()
    policy = LocalPolicy(trainer.model, trainer.tokenizer, version=trainer.version)
    report = evaluate_policy(policy, config.evaluation(), trainer.corpus.heldout, config.trainer.max_seq_len)
    trainer.model.train()
    trainer.store.record_metrics(
        trainer.version, {**report.metrics(), "demo_round": float(round_index)}, step=trainer.step_index
    )
    return RoundResult(
        round_index, trainer.version, {r.difficulty: r.pass_at_1 for r in report.results}, report.heldout_loss
    )


def campaign_spec(config: RoundsConfig, round_index: int) -> CampaignSpec:
    """The campaign of one round: the gold corpus's env at the campaign's digits, sampling the latest version."""
    return CampaignSpec(
        name=f"demo-round{round_index}",
        envs=[
            {
                "env_id": config.env_id,
                "min_difficulty": config.campaign_min_digits,
                "max_difficulty": config.campaign_max_digits,
            }
        ],
        tasks=config.campaign_tasks,
        samples_per_task=config.samples_per_task,
        sampling={
            "temperature": config.temperature,
            "max_new_tokens": config.max_new_tokens(config.campaign_max_digits),
        },
        policy="latest",
        seed=config.seed * 1000 + round_index,
        batch_size=8,
    )


def run_rounds(
    config: RoundsConfig,
    trainer: ContinualTrainer,
    campaigns: CampaignRunner,
    say: Callable[[str], None] = print,
    deadline: float | None = None,
    first: RoundResult | None = None,
) -> list[RoundResult]:
    """Round 0 evaluates the starting policy (unless given); each round then runs a campaign, trains on it
    until its fresh data is used up, and evaluates the new version. Stops early past `deadline` (monotonic)."""
    results = [first or evaluate_version(config, trainer, 0)]
    say(round_line(results[0]))
    for round_index in range(1, config.rounds + 1):
        if deadline is not None and time.monotonic() > deadline:
            say(f"time budget spent after {round_index - 1} rounds")
            break
        round_started = time.perf_counter()
        state = campaigns.run(campaign_spec(config, round_index))
        steps_before = trainer.step_index
        trainer.run(until_idle=True)
        result = evaluate_version(config, trainer, round_index)
        result.campaign_pass_rate = state.pass_rate
        result.records = state.done
        result.steps = trainer.step_index - steps_before
        result.seconds = time.perf_counter() - round_started
        results.append(result)
        say(round_line(result))
    return results


def run_in_fresh_farm(config: RoundsConfig, home: Path, say: Callable[[str], None] = print) -> list[RoundResult]:
    """The whole loop in `home` (a previous run's folder is wiped first): pre-train v1, start the worker pool
    (none when `config.workers` is 0: rollouts in this process), then the rounds. One result per round."""
    torch.set_num_threads(config.trainer.torch_threads)
    with LocalFarm.fresh(home) as farm:
        corpus = build_corpus(config.trainer.corpus)
        # Before the pool starts: pre-training has a time cap, and starting workers would take CPU from it.
        pretrain_initial_policy(config, farm.registry, corpus, say)
        if config.workers > 0:
            pool = farm.start_pool(config.workers)
            say(
                f"worker pool: {config.workers} process(es), private Redis {redact_url(pool.broker_url)}; "
                f"store {redact_url(farm.settings.store_url)}"
            )
        else:
            say(f"rollouts in this process (no worker pool); store {redact_url(farm.settings.store_url)}")
        return run_rounds(config, farm_trainer(config, farm, corpus), farm.campaigns(config.round_timeout_seconds), say)


def round_line(result: RoundResult) -> str:
    scores = "  ".join(f"d{d}={p:5.1%}" for d, p in sorted(result.pass_at_1.items()))
    if result.round == 0:
        return f"round 0 (pre-trained v{result.version}): pass@1 {scores}"
    campaign = f"{result.campaign_pass_rate:.1%}" if result.campaign_pass_rate is not None else "-"
    return (
        f"round {result.round}: campaign {result.records} rollouts, pass {campaign}; trained {result.steps} "
        f"steps -> v{result.version}: pass@1 {scores}  ({result.seconds:.0f}s)"
    )


def summary_table(results: list[RoundResult]) -> str:
    difficulties = sorted({d for r in results for d in r.pass_at_1})
    header = "round  version  " + "  ".join(f"{f'd{d}':>6}" for d in difficulties) + "  held-out loss"
    lines = ["held-out pass@1 (greedy) by difficulty (digits):", header]
    for r in results:
        cells = "  ".join(f"{r.pass_at_1.get(d, float('nan')):6.1%}" for d in difficulties)
        loss = f"{r.heldout_loss:.4f}" if r.heldout_loss is not None else "-"
        lines.append(f"{r.round:>5}  {f'v{r.version}':>7}  {cells}  {loss:>13}")
    return "\n".join(lines)
