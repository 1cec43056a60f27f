"""`verifarm demo`: the whole loop on one machine, on embedded defaults.

Pre-trains the tiny MoE policy briefly on worked additions, starts a private Redis and a Celery worker pool,
then runs rounds: a rollout campaign on the addition env (policy "latest"), the continual trainer on the
verified rollouts it produced (interleaved with pre-training steps), and a held-out evaluation of the new
version. Prints pass@1 per round and difficulty and saves a PNG of those curves.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import typer

from verifarm.trainer.config import EvalConfig, EvalSuite, TrainerConfig
from verifarm.trainer.corpus import CorpusConfig
from verifarm.trainer.schedule import ScheduleConfig


@dataclass(frozen=True)
class DemoConfig:
    """The embedded defaults of the demo (and the knobs the experiment script turns)."""

    seed: int = 0
    preset: str = "tiny"
    # ~350 steps take the tiny policy just past the point where it starts to add (2 cores: about a minute),
    # so the rounds have room to improve it.
    pretrain_steps: int = 350
    pretrain_seconds: float = 240.0  # a cap: a busy machine stops pre-training early rather than run long
    pretrain_learning_rate: float = 3e-3
    pretrain_batch_size: int = 32  # 64 with ~1500 steps masters 1-4 digits (the easy-to-hard experiment)
    pretrain_max_digits: int = 3  # gold worked solutions exist only up to here
    rounds: int = 8  # ~35-40 s each with 2 workers on 2 cores: the whole demo takes about 6 minutes
    # Many tasks: a worked solution is unique, so the deduplicated passing samples a round trains on number
    # about one per solved task (128 tasks gave 5-6 training steps a round).
    campaign_tasks: int = 1024
    samples_per_task: int = 16
    campaign_min_digits: int = 1
    # One digit beyond the gold data. It stays at 0%: the worked format does not extrapolate past the digits
    # the policy was trained on (pass@16 is 0 there too; benchmarks/README.md, easy to hard).
    campaign_max_digits: int = 4
    # Below 1: at temperature 1 many "passing" samples reach the right answer through a wrong worked line,
    # and fine-tuning on those teaches the policy that the answer need not follow from its work (0.5 beat
    # 0.7 in benchmarks/self_improvement.py).
    temperature: float = 0.5
    eval_difficulties: tuple[int, ...] = (1, 2, 3, 4)
    eval_tasks: int = 64  # per difficulty: 32 left round-to-round noise of +-9 points
    workers: int = 2  # worker pool processes; 0 rolls out in this process, without a broker
    round_timeout_seconds: float = 600.0
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            corpus=CorpusConfig(arithmetic_max_digits=3, arithmetic_documents=6000),
            schedule=ScheduleConfig(pretrain_steps=1, posttrain_steps=3, mode_weights={"rft": 1.0}),
            batch_size=32,
            # Small: the briefly pre-trained policy sits at a sharp point, and larger steps from a fresh optimizer
            # (its state is not carried over from pre-training) knock it off.
            learning_rate=1e-4,
            post_updates_per_batch=2,  # measured best of 1, 2 and 3 at this learning rate
            warmup_steps=20,
            max_seq_len=96,
            staleness_bound=1,
            publish_every=10_000,  # the demo publishes once per round, when the round's data is used up
            evaluate_on_publish=False,  # the demo evaluates each round itself
        )
    )

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.campaign_tasks < 1 or self.samples_per_task < 1 or self.workers < 0:
            raise ValueError("rounds, campaign_tasks and samples_per_task must be >= 1, workers >= 0")
        if self.pretrain_seconds <= 0 or self.pretrain_steps < 1 or self.pretrain_batch_size < 1:
            raise ValueError("pretrain_steps, pretrain_seconds and pretrain_batch_size must be positive")
        if not 1 <= self.campaign_min_digits <= self.campaign_max_digits:
            raise ValueError("need 1 <= campaign_min_digits <= campaign_max_digits")
        if self.trainer.corpus.arithmetic_max_digits != self.pretrain_max_digits:
            raise ValueError("the trainer's corpus must hold the same gold digits as the pre-training corpus")

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

    @property
    def env_id(self) -> str:
        """The env of the campaigns and the evaluation: the one whose worked solutions are the gold corpus."""
        return self.trainer.corpus.arithmetic_env

    def max_new_tokens(self, digits: int) -> int:
        # One worked line per column (~13 + digits chars) and the answer line, with room for mistakes.
        return (14 + digits) * (digits + 1) + 24

    def evaluation(self) -> EvalConfig:
        return EvalConfig(
            suites=(EvalSuite(self.env_id, tuple(self.eval_difficulties)),),
            tasks_per_difficulty=self.eval_tasks,
            samples=0,  # greedy pass@1 per round; pass@k costs samples x tasks more decoding
            max_new_tokens=self.max_new_tokens(max(self.eval_difficulties)),
        )


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


def pretrain_initial_policy(config: DemoConfig, registry, corpus, say: Callable[[str], None]) -> int:
    """Build the tiny policy, pre-train it on the gold corpus for a short time budget, publish it as v1."""
    from verifarm.policy.model import build_model
    from verifarm.policy.tokenizer import build_tokenizer
    from verifarm.policy.training import TrainConfig, pretrain

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


def evaluate_version(config: DemoConfig, trainer, round_index: int) -> RoundResult:
    from verifarm.policy.sampling import LocalPolicy
    from verifarm.trainer.evaluate import evaluate_policy

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


def campaign_spec(config: DemoConfig, round_index: int):
    from verifarm.rollout.campaign import CampaignSpec

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


class PrivatePool:
    """A private Redis under the settings' home and one `verifarm workers start` process on it, with `workers`
    pool processes; `stop()` always ends both."""

    def __init__(self, settings, workers: int) -> None:
        from verifarm.rollout.config import FarmConfig
        from verifarm.rollout.embedded_redis import EmbeddedRedis
        from verifarm.rollout.pool import WorkerPool

        self.redis = EmbeddedRedis(settings.home / "redis")
        self.broker_url, self.redis_pid = self.redis.start()
        try:
            self.farm = FarmConfig.from_settings(settings, broker_url=self.broker_url)
            self.pool = WorkerPool(
                self.farm, settings.home / "logs", processes=1, concurrency=workers, name="demo"
            ).start()
        except BaseException:
            self.redis.stop(self.redis_pid)
            raise

    def campaigns(self, timeout_seconds: float) -> PoolCampaigns:
        return PoolCampaigns(self.farm, self.pool, timeout_seconds)

    def stop(self) -> None:
        try:
            self.pool.stop()
        finally:
            self.redis.stop(self.redis_pid)


class PoolCampaigns:
    """Runs a campaign on the worker pool through the broker and waits until every record is stored."""

    def __init__(self, farm, pool, timeout_seconds: float) -> None:
        self.farm, self.pool, self.timeout_seconds = farm, pool, timeout_seconds

    def run(self, spec):
        from verifarm.rollout.campaign import status, submit

        row = submit(spec, self.farm)
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            state = status(row.campaign_id, self.farm.store_url)
            if state.state == "done":
                return state
            self.pool.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"campaign {row.campaign_id} did not finish in {self.timeout_seconds:.0f}s "
                    f"({state.done}/{state.expected}); worker logs in {self.pool.log_dir}"
                )
            time.sleep(0.5)


class InProcessCampaigns:
    """Runs a campaign's batches in this process with the farm's own rollout function (no broker, no pool)."""

    def __init__(self, store, registry) -> None:
        from verifarm.envs.catalog import FamilyCache
        from verifarm.rollout.policy_source import CheckpointPolicySource

        self.store = store
        self.policies = CheckpointPolicySource(registry.root)
        self.families = FamilyCache()

    def run(self, spec):
        from verifarm.rollout.campaign import new_campaign_id, status_from_store
        from verifarm.rollout.rollouts import rollout_batch

        campaign_id = new_campaign_id(spec)
        self.store.create_campaign(
            campaign_id, spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, spec.priority
        )
        for batch in range(spec.num_batches):
            sampler = self.policies.sampler(spec.policy)  # "latest": picks up new versions between batches
            rollout_batch(self.store, campaign_id, spec, list(spec.batch_range(batch)), sampler, self.families)
        return status_from_store(self.store, campaign_id)


def run_rounds(
    config: DemoConfig,
    trainer,
    campaigns,
    say: Callable[[str], None] = print,
    deadline: float | None = None,
    first: RoundResult | None = None,
) -> list[RoundResult]:
    """Round 0 evaluates the starting policy (unless given); each round then runs a campaign, trains on it
    until its fresh data is used up, and evaluates the new version. Stops early past `deadline` (monotonic)."""
    results = [first or evaluate_version(config, trainer, 0)]
    say(_round_line(results[0]))
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
        say(_round_line(result))
    return results


DEMO_MARKER = ".verifarm-demo"


def prepare_home(home: Path) -> None:
    """Empty the demo folder, but only one that a previous demo made (never a user's folder by mistake)."""
    if home.exists() and any(home.iterdir()):
        if not (home / DEMO_MARKER).is_file():
            raise ValueError(f"{home} is not empty and was not made by `verifarm demo`; choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / DEMO_MARKER).write_text("made by verifarm demo; wiped by the next run\n")


def run_demo(config: DemoConfig, home: Path, say: Callable[[str], None] = print) -> list[RoundResult]:
    """The whole demo in `home` (a previous demo's folder is wiped first); returns one result per round,
    round 0 being the pre-trained policy."""
    import torch

    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.rollout.store import RolloutStore
    from verifarm.settings import Settings
    from verifarm.trainer.corpus import build_corpus
    from verifarm.trainer.daemon import ContinualTrainer

    started = time.perf_counter()
    torch.set_num_threads(config.trainer.torch_threads)
    prepare_home(home)
    settings = Settings(home=home, redis_url=None, database_url=None, checkpoint_dir=None)
    registry = CheckpointRegistry(settings.checkpoints)
    corpus = build_corpus(config.trainer.corpus)
    pretrain_initial_policy(config, registry, corpus, say)

    store = RolloutStore(settings.store_url)
    pool = PrivatePool(settings, config.workers) if config.workers > 0 else None
    try:
        if pool is not None:
            say(
                f"worker pool: {config.workers} process(es), private Redis {pool.broker_url}; "
                f"store {settings.store_url}"
            )
            campaigns = pool.campaigns(config.round_timeout_seconds)
        else:
            say(f"rollouts in this process (no worker pool); store {settings.store_url}")
            campaigns = InProcessCampaigns(store, registry)
        trainer = ContinualTrainer(config.trainer, registry, store, home / "trainer" / "state", corpus=corpus)
        results = run_rounds(config, trainer, campaigns, say)
    finally:
        store.close()
        if pool is not None:
            pool.stop()
    plot_path = plot_rounds(results, home / "pass_at_1.png")
    (home / "demo_results.json").write_text(json.dumps([r.__dict__ for r in results], indent=2))
    say(summary_table(results))
    say(f"plot: {plot_path}\ndemo finished in {time.perf_counter() - started:.0f}s")
    return results


def _round_line(result: RoundResult) -> str:
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


def plot_rounds(results: list[RoundResult], path: Path) -> Path:
    """pass@1 against round, one curve per difficulty (Agg backend: no display needed)."""
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
    from verifarm.settings import load_settings

    config = DemoConfig.quick() if quick else DemoConfig()
    config = replace(
        config, seed=seed, rounds=rounds or config.rounds, workers=config.workers if workers is None else workers
    )
    run_demo(config, home or load_settings().home / "demo")
