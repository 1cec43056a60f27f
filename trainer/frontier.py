"""The frontier curriculum: the daemon teaches the policy lengths past its gold data from its own verified samples.

The policy starts from a corpus of worked tasks of at most `gold_digits` digits (the frontier). Each round:

1. a campaign of tasks one digit past the frontier (up to `reach` digits past, if set), sampled by the newest
   version;
2. its verified passing samples join the replay pool (the passing samples of every round so far, nothing else:
   a sample longer than the gold data enters training only if the verifier passed it);
3. `steps_per_round` steps of the trainer's schedule: pre-training steps on the gold corpus interleaved with
   rejection-sampling steps drawn from the whole pool;
4. greedy pass@1 of the new weights on held-out tasks (evaluation seeds, never a campaign's) at every length
   from the gold length to the target; a version is published with that evaluation and the curriculum state;
5. the frontier moves up one digit when held-out pass@1 at frontier + 1 reaches the threshold. The campaign's own
   pass rate never moves it.

It stops once the target length is mastered, after `max_rounds`, or when asked. The state (frontier, rounds,
campaigns, history) rides in each published version's metadata, so a restarted daemon carries on where it was.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from verifarm.policy.model import build_model
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.tokenizer import build_tokenizer
from verifarm.policy.training import TrainConfig, pretrain
from verifarm.rollout.campaign import CampaignSpec
from verifarm.rollout.store import RecordFilter
from verifarm.trainer.config import FrontierConfig
from verifarm.trainer.evaluate import evaluate_policy
from verifarm.trainer.post_data import PostBatch

METADATA_KEY = "frontier"


@dataclass
class FrontierRound:
    """What one round did: its index, the frontier after it, the pass@1 per length, wall time since the start."""

    round: int
    frontier: int
    pass_at_1: dict[int, float]
    seconds: float
    version: int | None = None
    passing_samples: int = 0  # the round's campaign: verified passing samples it added to the pool
    campaign_pass_rate: float = 0.0


@dataclass
class FrontierState:
    frontier: int
    rounds: int = 0
    campaign_ids: list[str] = field(default_factory=list)
    history: list[FrontierRound] = field(default_factory=list)
    seconds: float = 0.0  # wall time spent in earlier runs (a restart goes on counting)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FrontierState:
        history = [
            FrontierRound(**{**r, "pass_at_1": {int(k): v for k, v in r["pass_at_1"].items()}})
            for r in data.get("history", [])
        ]
        return cls(
            frontier=int(data["frontier"]),
            rounds=int(data.get("rounds", 0)),
            campaign_ids=list(data.get("campaign_ids", [])),
            history=history,
            seconds=float(data.get("seconds", 0.0)),
        )


def next_frontier(frontier: int, held_out_pass_at_1: dict[int, float], threshold: float) -> int:
    """The frontier after a round: one digit up when held-out pass@1 at frontier + 1 reaches the threshold."""
    return frontier + 1 if held_out_pass_at_1.get(frontier + 1, 0.0) >= threshold else frontier


def mastered(state: FrontierState, config: FrontierConfig) -> bool:
    return state.frontier >= config.target_digits


def round_spec(config: FrontierConfig, round_index: int, digits: int, seed: int):
    """The campaign of one round: tasks of `digits` digits (up to `digits + reach - 1` with a reach past one
    digit, never past the target), sampled by the newest version."""
    longest = min(digits + config.reach - 1, config.target_digits)
    return CampaignSpec(
        name=f"frontier-r{round_index}-d{digits}",
        envs=[
            {
                "env_id": config.env_id,
                "options": dict(config.env_options),
                "min_difficulty": digits,
                "max_difficulty": longest,
            }
        ],
        tasks=config.tasks_per_round,
        samples_per_task=config.samples_per_task,
        sampling={"temperature": config.temperature, "max_new_tokens": config.max_new_tokens(longest)},
        policy="latest",
        seed=seed * 1000 + round_index,
        batch_size=16,
    )


class ReplayPool:
    """The verified passing samples of the curriculum's campaigns, drawn at random for rejection-sampling steps.

    Only records the verifier passed enter (never a failing or infra-error one), each distinct completion of a
    task once. Draws are a function of (seed, step), so a restarted trainer draws the same batches.
    """

    def __init__(self, store, env_id: str, seed: int) -> None:
        self.store = store
        self.env_id = env_id
        self.seed = seed
        self.samples: list = []

    def refresh(self, campaign_ids: list[str]) -> int:
        """Reload the pool from the store; returns its size."""

        unique: dict[tuple[str, str], Any] = {}
        for campaign_id in campaign_ids:
            for record in self.store.iter_records(
                RecordFilter(campaign_id=campaign_id, env_id=self.env_id, passed=True, outcome="pass")
            ):
                unique.setdefault((record.task_id, record.completion), record)
        self.samples = list(unique.values())
        return len(self.samples)

    def batch(self, mode: str, batch_size: int, step: int, current_version: int) -> PostBatch | None:
        """A rejection-sampling batch of `batch_size` pool samples (None while the pool is empty)."""
        if mode != "rft":
            raise ValueError(f"the frontier curriculum trains on verified samples with rft steps, not {mode!r}")
        if not self.samples:
            return None
        rng = random.Random(self.seed * 1_000_003 + step)
        chosen = [self.samples[rng.randrange(len(self.samples))] for _ in range(batch_size)]
        versions = [int(r.policy_version or 0) for r in chosen]
        return PostBatch(
            mode="rft",
            prompts=[r.prompt for r in chosen],
            completions=[r.completion for r in chosen],
            rewards=[float(r.reward) for r in chosen],
            group_ids=list(range(len(chosen))),
            policy_versions=versions,
            staleness=[current_version - v for v in versions],
        )


def publish_gold_policy(
    registry,
    corpus,
    position: str,
    train: TrainConfig,
    say: Callable[[str], None] = print,
    preset: str = "tiny",
    seed: int = 0,
) -> int:
    """The curriculum's starting point: a fresh `preset` policy with `position` scheme, pre-trained on the gold
    corpus within `train`'s step and time budget, published as the registry's next version."""
    tokenizer = build_tokenizer()
    model = build_model(preset, len(tokenizer), seed=seed, position_scheme=position)
    metrics = pretrain(model, tokenizer, list(corpus.train), train)
    say(
        f"pre-trained the {preset} policy ({position} positions) for {metrics['seconds']:.0f}s "
        f"({metrics['steps']:.0f} steps, final loss {metrics['final_loss']:.3f}) on the gold corpus "
        f"(up to {corpus.config.arithmetic_max_digits} digits)"
    )
    return registry.publish(model.eval(), tokenizer, {"source": "gold-pretrain", "pretrain": metrics})


def evaluate_lengths(trainer, config: FrontierConfig) -> dict[int, float]:
    """Greedy held-out pass@1 per length of the trainer's current weights."""

    was_training = trainer.model.training
    trainer.model.eval()
    try:
        report = evaluate_policy(LocalPolicy(trainer.model, trainer.tokenizer, trainer.version), config.evaluation())
    finally:
        trainer.model.train(was_training)
    return {r.difficulty: r.pass_at_1 for r in report.results}


def round_line(entry: FrontierRound) -> str:
    scores = "  ".join(f"d{d}={p:6.1%}" for d, p in sorted(entry.pass_at_1.items()))
    campaign = "" if entry.round == 0 else f"  +{entry.passing_samples} passing ({entry.campaign_pass_rate:.0%})"
    return f"[{entry.seconds:6.0f}s] round {entry.round:>2} frontier {entry.frontier}: {scores}{campaign}"


def run_frontier(
    trainer,
    campaigns,
    say: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
    deadline: float | None = None,
) -> FrontierState:
    """Drive the trainer's frontier curriculum (its config's `curriculum`) until it is mastered, out of rounds,
    past `deadline` (monotonic seconds) or asked to stop. `campaigns.run(spec)` rolls out one campaign and returns
    its status (in this process or on a worker pool)."""
    config: FrontierConfig | None = trainer.config.curriculum
    if config is None:
        raise ValueError("the trainer config has no frontier curriculum (set `curriculum:` in its YAML)")
    saved = trainer.metadata.get(METADATA_KEY)
    state = FrontierState.from_dict(saved) if saved else FrontierState(frontier=config.gold_digits)
    pool = ReplayPool(trainer.store, config.env_id, trainer.config.seed)
    pool.refresh(state.campaign_ids)
    trainer.post_source = pool.batch
    started = time.monotonic() - state.seconds

    def elapsed() -> float:
        return time.monotonic() - started

    if not state.history:  # round 0: where the starting policy stands
        state.history.append(FrontierRound(0, state.frontier, evaluate_lengths(trainer, config), elapsed()))
        state.history[0].version = trainer.version
        say(round_line(state.history[0]))
    while not mastered(state, config) and state.rounds < config.max_rounds and not should_stop():
        if deadline is not None and time.monotonic() > deadline:
            say(f"time budget spent after {state.rounds} rounds")
            break
        round_index = state.rounds + 1
        status = campaigns.run(round_spec(config, round_index, state.frontier + 1, trainer.config.seed))
        state.campaign_ids.append(status.campaign_id)
        before = len(pool.samples)
        pool.refresh(state.campaign_ids)
        for _ in range(config.steps_per_round):
            if trainer.step() is None:  # no verified sample yet: the pre-training share goes on
                trainer.step("pretrain")
        scores = evaluate_lengths(trainer, config)
        state.frontier = next_frontier(state.frontier, scores, config.threshold)
        state.rounds = round_index
        entry = FrontierRound(
            round_index,
            state.frontier,
            scores,
            elapsed(),
            passing_samples=len(pool.samples) - before,
            campaign_pass_rate=float(getattr(status, "pass_rate", 0.0) or 0.0),
        )
        state.history.append(entry)
        state.seconds = elapsed()
        metrics = {f"frontier/d{d}/pass@1": p for d, p in scores.items()}
        metrics.update({"frontier/digits": float(state.frontier), "frontier/pool": float(len(pool.samples))})
        report = trainer.publish(extra_metadata={METADATA_KEY: state.to_dict()}, metrics=metrics)
        entry.version = report.version
        say(round_line(entry))
    return state
