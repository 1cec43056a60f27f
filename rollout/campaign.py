"""Rollout campaigns: the validated spec, the pure plan of its tasks, and submit / status / cancel.

Task i of a campaign is a pure function of (spec, i), so any worker can rebuild any task from two numbers and a
redelivered batch regenerates exactly the same prompts.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from verifarm.envs.catalog import ENV_IDS, get_family
from verifarm.policy.params import SamplingParams
from verifarm.rollout.store import RolloutStore
from verifarm.rollout.translate_settings import TRANSLATE_ENV_ID, TranslateSettings

# Upper bounds that catch typos (an extra zero or three), not real campaigns.
MAX_TASKS = 10_000_000
MAX_SAMPLES_PER_TASK = 1024
MAX_BATCH_SIZE = 10_000


class EnvChoice(BaseModel):
    """One env of the campaign's mix: how often it is drawn and at what difficulties."""

    model_config = ConfigDict(extra="forbid")

    env_id: str
    weight: float = Field(default=1.0, gt=0, le=1e6)
    min_difficulty: int | None = None  # None: the family's own minimum
    max_difficulty: int | None = None  # None: the same as min_difficulty (a single difficulty)
    options: dict[str, Any] = Field(default_factory=dict)  # keyword options of the env id, e.g. dataset=...

    @field_validator("env_id")
    @classmethod
    def _known_env(cls, env_id: str) -> str:
        if env_id not in ENV_IDS:
            raise ValueError(f"unknown env id {env_id!r}; known: {', '.join(sorted(ENV_IDS))}")
        return env_id

    @model_validator(mode="after")
    def _difficulty_range_fits_family(self) -> EnvChoice:
        family = get_family(self.env_id, **self.options)  # raises ValueError on bad options
        low = family.min_difficulty if self.min_difficulty is None else self.min_difficulty
        high = low if self.max_difficulty is None else self.max_difficulty
        if not family.min_difficulty <= low <= high <= family.max_difficulty:
            raise ValueError(
                f"{self.env_id}: difficulty range [{low}, {high}] must lie within the family's "
                f"[{family.min_difficulty}, {family.max_difficulty}] with min <= max"
            )
        self.min_difficulty, self.max_difficulty = low, high
        return self


class SpeculativeSettings(BaseModel):
    """Speculative sampling: `auto` samples with the drafter the registry publishes beside the policy
    version (plain sampling while there is none), `none` never drafts. Either way the samples follow the
    policy's distribution exactly; a drafter only changes the speed."""

    model_config = ConfigDict(extra="forbid")

    drafter: Literal["auto", "none"] = "none"
    # The most draft tokens a round; the sampler drafts fewer when its drafter's acceptance calls for it (arithmetic
    # at temperature 0.5, 32 rows: k <= 16 1.45x exact, k <= 4 1.28x; benchmarks/README.md).
    k: int = Field(default=16, ge=1, le=16)


class EndpointSpec(BaseModel):
    """An OpenAI-compatible completions server (e.g. `verifarm serve` on a GPU machine) to sample from."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    model: str = Field(default="verifarm-policy", min_length=1)
    timeout_s: float = Field(default=600.0, gt=0, le=3600)


class CampaignSpec(BaseModel):
    """What to roll out: an env mix, how many tasks and samples, how to sample, with which policy."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="campaign", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    envs: list[EnvChoice] = Field(min_length=1)
    tasks: int = Field(ge=1, le=MAX_TASKS)
    samples_per_task: int = Field(default=4, ge=1, le=MAX_SAMPLES_PER_TASK)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    speculative: SpeculativeSettings = Field(default_factory=SpeculativeSettings)
    # "latest" follows new checkpoints between batches; a number pins one; "reference" is the load-test policy.
    policy: Literal["latest", "reference"] | int = "latest"
    reference_corruption: float = Field(default=0.0, ge=0.0, le=1.0)  # only with policy: reference
    # Sample from a completions server instead of a checkpoint loaded in each worker; the server decides the
    # version (reported per completion), so it goes with policy: latest.
    endpoint: EndpointSpec | None = None
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    priority: int = Field(default=5, ge=0, le=9)  # 9 is the most urgent
    batch_size: int = Field(default=8, ge=1, le=MAX_BATCH_SIZE)  # tasks per Celery task
    # A translate campaign (rollout/translate.py): its tasks are stored verified programs to carry into other
    # languages; `submit` freezes the sources from the store into the spec.
    translate: TranslateSettings | None = None

    @field_validator("policy")
    @classmethod
    def _positive_version(cls, policy: str | int) -> str | int:
        if isinstance(policy, int) and policy < 1:
            raise ValueError(f"policy version must be >= 1 (versions start at 1), got {policy}")
        return policy

    @model_validator(mode="after")
    def _policy_options_fit(self) -> CampaignSpec:
        if self.reference_corruption and self.policy != "reference":
            raise ValueError("reference_corruption only applies to policy: reference")
        if self.endpoint is not None and self.policy != "latest":
            raise ValueError("an endpoint serves whatever version it holds: use it with policy: latest")
        if self.speculative.drafter == "auto" and (self.policy == "reference" or self.endpoint is not None):
            raise ValueError(
                "speculative drafter: auto needs a checkpoint policy sampled by the workers "
                "(an endpoint decides its own sampling; the reference policy has no model)"
            )
        if self.translate is not None and self.translate.sources and self.tasks != len(self.translate.pairs()):
            raise ValueError(
                f"a translate campaign with frozen sources has {len(self.translate.pairs())} tasks "
                f"(one per source and other target language), not {self.tasks}"
            )
        return self

    @property
    def num_batches(self) -> int:
        return -(-self.tasks // self.batch_size)

    def batch_range(self, batch_index: int) -> range:
        """The task indices of batch `batch_index`."""
        if not 0 <= batch_index < self.num_batches:
            raise ValueError(f"batch index {batch_index} outside [0, {self.num_batches})")
        start = batch_index * self.batch_size
        return range(start, min(start + self.batch_size, self.tasks))


def _readable_errors(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "spec"
        lines.append(f"{where}: {problem['msg']}")
    return "invalid campaign spec:\n  " + "\n  ".join(lines)


def parse_spec(data: Any) -> CampaignSpec:
    """A CampaignSpec from already-parsed data; every problem is reported as one ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"invalid campaign spec: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as error:
        raise ValueError(_readable_errors(error)) from None


def parse_spec_text(text: str, fmt: Literal["yaml", "json"] = "yaml") -> CampaignSpec:
    """Parse YAML (which includes JSON) or strict JSON text into a validated spec."""
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"malformed campaign spec ({fmt}): {error}") from None
    return parse_spec(data)


def load_spec(path: Path | str) -> CampaignSpec:
    """Read a .yaml/.yml/.json spec file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"campaign spec file {str(path)!r} does not exist")
    fmt: Literal["yaml", "json"] = "json" if path.suffix.lower() == ".json" else "yaml"
    return parse_spec_text(path.read_text(encoding="utf-8"), fmt)


@dataclass(frozen=True)
class PlannedTask:
    """Everything a worker needs to regenerate task `task_index` of a campaign."""

    task_index: int
    env_id: str
    options: dict[str, Any]
    difficulty: int
    seed: int  # the task seed handed to the family's generate()


def plan_task(spec: CampaignSpec, task_index: int) -> PlannedTask:
    """Task `task_index` of the campaign: a pure function of the spec and the index."""
    if not 0 <= task_index < spec.tasks:
        raise ValueError(f"task index {task_index} outside [0, {spec.tasks})")
    if spec.translate is not None:
        return _plan_translation(spec.translate, task_index)
    # Hash (seed, index) rather than add them, so campaigns with seeds 0 and 1 do not share shifted tasks.
    digest = hashlib.sha256(f"verifarm-campaign:{spec.seed}:{task_index}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    choice = rng.choices(spec.envs, weights=[e.weight for e in spec.envs])[0]
    # The validator filled both bounds; the fallbacks only keep the type checker calm.
    difficulty = rng.randint(choice.min_difficulty or 0, choice.max_difficulty or 0)
    return PlannedTask(task_index, choice.env_id, dict(choice.options), difficulty, rng.getrandbits(31))


def _plan_translation(translate: TranslateSettings, task_index: int) -> PlannedTask:
    """Task `task_index` of a translate campaign: the Translate-v0 family over one (source, target) pair."""
    pairs = translate.pairs()
    if not 0 <= task_index < len(pairs):
        raise ValueError(f"task index {task_index} outside the campaign's {len(pairs)} translation pairs")
    source, target = pairs[task_index]
    options = {
        "target_language": target,
        "source_env_id": source.env_id,
        "source_options": source.options,
        "source_seed": source.seed,
        "source_difficulty": source.difficulty,
        "source_completion": source.completion,
        "source_record_id": source.record_id,
        "differential_inputs": translate.differential_inputs,
    }
    return PlannedTask(task_index, TRANSLATE_ENV_ID, options, source.difficulty, source.seed)


def new_campaign_id(spec: CampaignSpec) -> str:
    return f"{spec.name}-{uuid.uuid4().hex[:10]}"


# ---- the Python API behind `verifarm campaign status | list | cancel` (submit and requeue: rollout/submission.py)


class CampaignStatus(BaseModel):
    campaign_id: str
    name: str
    state: Literal["running", "done", "cancelled"]
    expected: int
    done: int
    passed: int
    failed: int
    infra_errors: int
    infra_retries: int
    rollouts_per_second: float | None  # records over the campaign's wall time (submit to last record, or now)
    created_at: datetime

    @property
    def pass_rate(self) -> float | None:
        scored = self.passed + self.failed
        return self.passed / scored if scored else None

    @property
    def fraction_done(self) -> float:
        return self.done / self.expected if self.expected else 1.0


def status_from_store(store: RolloutStore, campaign_id: str) -> CampaignStatus:
    row = store.get_campaign(campaign_id)
    if row is None:
        raise ValueError(f"no campaign {campaign_id!r}: `verifarm campaign list` shows the campaigns")
    counts = store.outcome_counts(campaign_id)
    done = sum(counts.values())
    if row.cancelled:
        state = "cancelled"
    elif done >= row.expected_records:
        state = "done"
    else:
        state = "running"
    # Over the campaign's wall time (submitted until its last record, or until now while it runs): a batch
    # stores its records together, so the span between records alone overstates the rate many times over.
    rate = None
    span = store.time_span(campaign_id)
    if span is not None:
        end = span[1] if state != "running" else max(span[1], datetime.now(timezone.utc))
        seconds = (end - row.created_at).total_seconds()
        rate = done / seconds if seconds > 0 else None
    return CampaignStatus(
        campaign_id=campaign_id,
        name=row.name,
        state=state,
        expected=row.expected_records,
        done=done,
        passed=counts["pass"],
        failed=counts["fail"],
        infra_errors=counts["infra_error"],
        infra_retries=row.infra_retries,
        rollouts_per_second=rate,
        created_at=row.created_at,
    )


def status(campaign_id: str, store_url: str) -> CampaignStatus:
    """Progress is the records in the store: no broker needed."""
    with RolloutStore(store_url) as store:
        return status_from_store(store, campaign_id)


def list_campaigns(store_url: str) -> list[CampaignStatus]:
    with RolloutStore(store_url) as store:
        return [status_from_store(store, row.campaign_id) for row in store.list_campaigns()]


class CampaignFinished(ValueError):
    """A finished campaign cannot be cancelled: it has nothing left to stop."""


def cancel(campaign_id: str, store_url: str) -> CampaignStatus:
    """Flag a running campaign: batches not started yet do nothing; records already stored stay.

    A finished campaign is refused (CampaignFinished); cancelling a cancelled one changes nothing.
    """
    with RolloutStore(store_url) as store:
        current = status_from_store(store, campaign_id)
        if current.state == "done":
            raise CampaignFinished(
                f"campaign {campaign_id} is already done ({current.done}/{current.expected} "
                "records): there is nothing to cancel"
            )
        store.set_cancelled(campaign_id)
        return status_from_store(store, campaign_id)


_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_campaign_id(campaign_id: str) -> str:
    if not _ID_PATTERN.match(campaign_id) or len(campaign_id) > 64:
        raise ValueError(f"campaign id {campaign_id!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return campaign_id
