"""Typed configuration of the continual trainer and of its held-out evaluation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from verifarm.trainer.corpus import CorpusConfig
from verifarm.trainer.schedule import ScheduleConfig

# Held-out evaluation tasks are drawn from seeds far above any campaign's, so they are never trained on.
HELDOUT_SEED_BASE = 7_000_000_000


@dataclass(frozen=True)
class EvalSuite:
    """One env and the difficulties to evaluate it at."""

    env_id: str
    difficulties: tuple[int, ...]
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.difficulties:
            raise ValueError(f"evaluation of {self.env_id} needs at least one difficulty")


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: pass@1 greedy and pass@k (from `samples` draws at `temperature`) per difficulty."""

    suites: tuple[EvalSuite, ...] = (EvalSuite("verifarm/Addition-v0", (1, 2, 3, 4)),)
    tasks_per_difficulty: int = 32
    k: int = 8
    samples: int = 8  # draws per task for the unbiased pass@k estimator (>= k); 0 evaluates greedy pass@1 only
    temperature: float = 1.0
    max_new_tokens: int = 128  # enough for a worked 4-digit sum (5 lines of ~18 characters + answer)
    heldout_loss_documents: int = 64
    seed: int = HELDOUT_SEED_BASE

    def __post_init__(self) -> None:
        if self.tasks_per_difficulty <= 0:
            raise ValueError(f"tasks_per_difficulty must be > 0, got {self.tasks_per_difficulty}")
        if self.k < 1 or (self.samples and self.samples < self.k):
            raise ValueError(f"pass@k needs 1 <= k <= samples (or samples=0), got k={self.k}, samples={self.samples}")
        if self.temperature <= 0:
            raise ValueError(f"pass@k sampling needs temperature > 0, got {self.temperature}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {self.max_new_tokens}")


@dataclass(frozen=True)
class TrainerConfig:
    """Everything one daemon run needs; saved next to its state so a resume can check it is the same run."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    env_ids: tuple[str, ...] = ("verifarm/Addition-v0",)  # post-training data is read for these envs only
    campaign_id: str | None = None  # None: records of every campaign
    seed: int = 0
    batch_size: int = 32
    learning_rate: float = 5e-4
    # Linear warm-up from the trainer's first step: a fresh AdamW moves every weight by ~lr on its first
    # update, which can undo a small pre-trained policy's skills before the moments are estimated.
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_seq_len: int = 192
    staleness_bound: int = 2  # in policy versions
    publish_every: int = 50  # steps
    evaluate_on_publish: bool = True
    refresh_drafter: bool = False  # distill and publish the new version's speculative-sampling drafter on publish
    teacher_version: int | None = None  # registry version that distillation steps learn from
    distill_temperature: float = 2.0
    post_updates_per_batch: int = 1  # optimizer updates on each post-training batch (PPO-style epochs)
    grpo_clip: float = 0.2
    # Off-policy correction: weight each token by min(exp(old - behaviour), tis_cap), behaviour being the
    # log-probs the sampler stored (they differ under int8 weights or a bfloat16 cache); None: not applied.
    tis_cap: float | None = None
    idle_poll_seconds: float = 2.0  # how long to wait before looking again when no post-training data is fresh
    # One thread: on a shared or busy machine two OpenMP threads spin against each other and a tiny model's
    # step gets up to 10x slower; the farm's worker processes take the other cores.
    torch_threads: int = 1

    def __post_init__(self) -> None:
        positive = (
            "batch_size",
            "learning_rate",
            "max_seq_len",
            "publish_every",
            "torch_threads",
            "grad_clip",
            "post_updates_per_batch",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.staleness_bound < 0:
            raise ValueError(f"staleness_bound must be >= 0 policy versions, got {self.staleness_bound}")
        if self.schedule.mode_weights.get("distill", 0) > 0 and self.teacher_version is None:
            raise ValueError("distillation steps are scheduled: set teacher_version to a registry version")
        if not self.env_ids:
            raise ValueError("env_ids must name at least one env to read post-training data for")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainerConfig:
        data = dict(data)
        corpus = CorpusConfig(**data.pop("corpus", {}))
        schedule = ScheduleConfig(**data.pop("schedule", {}))
        evaluation = dict(data.pop("evaluation", {}))
        if "suites" in evaluation:
            evaluation["suites"] = tuple(
                EvalSuite(s["env_id"], tuple(s["difficulties"]), dict(s.get("options", {})))
                for s in evaluation["suites"]
            )
        if "env_ids" in data:
            data["env_ids"] = tuple(data["env_ids"])
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown trainer config keys {sorted(unknown)}")
        return cls(corpus=corpus, schedule=schedule, evaluation=EvalConfig(**evaluation), **data)

    @classmethod
    def from_yaml(cls, path: Path) -> TrainerConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping of trainer config keys")
        return cls.from_dict(data)

    def to_yaml(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump(plain(self.to_dict()), sort_keys=False))


def plain(value):
    """Tuples to lists, so YAML and JSON stay readable and load back through from_dict."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
