"""The drafter of speculative sampling: distilled from a policy version, measured, published beside it.

`refresh_drafter` is what runs when the policy moves on: it samples the new version on training prompts,
distills a small dense drafter on those completions (starting from the previous drafter when there is
one), measures how often the policy keeps its drafts on held-out prompts, and publishes it in the
registry beside the version. Until it has run, the older drafter keeps serving: slower, never different.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from transformers import MixtralForCausalLM

from verifarm.policy.model import build_drafter
from verifarm.policy.registry import CheckpointRegistry, DrafterInfo, NoCheckpoint
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.training import TrainConfig, distill


@dataclass(frozen=True)
class DrafterConfig:
    """How a drafter is made and measured."""

    num_layers: int = 1
    samples_per_prompt: int = 4  # policy completions per training prompt (the distillation data)
    max_new_tokens: int = 64
    sample_temperature: float = 1.0
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=300, batch_size=32, learning_rate=3e-3, warmup_steps=10)
    )
    draft_tokens: int = 4  # k of the acceptance measurement
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_layers < 1 or self.samples_per_prompt < 1 or self.max_new_tokens < 1:
            raise ValueError(
                "num_layers, samples_per_prompt and max_new_tokens must be at least 1, got "
                f"{self.num_layers}, {self.samples_per_prompt}, {self.max_new_tokens}"
            )
        if not self.sample_temperature > 0:
            raise ValueError(f"sample_temperature must be > 0, got {self.sample_temperature}")


class DrafterSource(Protocol):
    """What `PublishedDrafter` needs of a registry: the local `CheckpointRegistry` and the fetching
    `RemoteRegistry` both provide it."""

    def drafter_versions(self) -> list[int]: ...

    def load_drafter(
        self, version: int, *, device: str | None = None, dtype: Any = None
    ) -> tuple[Any, DrafterInfo]: ...


class PublishedDrafter:
    """The registry's drafter for whichever policy version a sampler holds: `attach` gives the policy the
    drafter `registry.drafter_for(version)` picks (loaded once per policy version and drafter version, so a
    newly published or refreshed drafter is picked up), or none. Speculative sampling is exact, so this only
    changes the speed of sampling, never its output."""

    def __init__(self, registry: DrafterSource, device: str | None = None):
        self.registry = registry
        self.device = device
        self._drafter: Any = None  # the loaded drafter, as `load_drafter` gives it
        self._key: tuple[int, int] | None = None  # the (policy version, drafter's version) it was loaded for

    def attach(self, policy: LocalPolicy, wanted: bool, draft_tokens: int) -> None:
        """Sample `policy` speculatively with `draft_tokens` drafts a round when `wanted` and a drafter of its
        version or an older one is published; plainly otherwise."""
        policy.draft_tokens = draft_tokens
        candidates = [v for v in self.registry.drafter_versions() if v <= policy.version] if wanted else []
        if not candidates:  # a directory listing: no hashing unless a drafter is (re)loaded
            policy.drafter = None
            return
        key = (policy.version, candidates[-1])
        if key != self._key:
            self._drafter, _ = self.registry.load_drafter(policy.version, device=self.device)
            self._key = key
        policy.drafter = self._drafter


def acceptance_rate(
    policy: LocalPolicy,
    drafter,
    prompts: Sequence[str],
    draft_tokens: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    seed: int = 0,
) -> float:
    """The share of draft tokens the policy keeps when sampling `prompts` speculatively with `drafter`."""
    speculative = LocalPolicy(
        policy.model, policy.tokenizer, policy.version, drafter=drafter, draft_tokens=draft_tokens
    )
    rows = speculative.sample(list(prompts), n=1, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    proposed = sum(c.draft_proposed for row in rows for c in row)
    return sum(c.draft_accepted for row in rows for c in row) / max(proposed, 1)


def distill_drafter(
    policy: LocalPolicy, prompts: Sequence[str], config: DrafterConfig, start=None
) -> tuple[object, dict[str, float]]:
    """A drafter fitted to `policy` on its own completions of `prompts`; `start` (a drafter of an earlier
    version with the same shape) is copied and fine-tuned instead of building a fresh one."""
    if not prompts:
        raise ValueError("distilling a drafter needs at least one training prompt")
    if not isinstance(policy.model, MixtralForCausalLM):
        raise ValueError(f"drafters are distilled from Mixtral-style policies, got {type(policy.model).__name__}")
    drafter = build_drafter(policy.model, config.num_layers, seed=config.seed)
    if start is not None and start.config.to_dict() == drafter.config.to_dict():
        drafter.load_state_dict(start.state_dict())
    samples = policy.sample(
        list(prompts),
        n=config.samples_per_prompt,
        temperature=config.sample_temperature,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
    )
    pairs = [(prompt, completion.text) for prompt, row in zip(prompts, samples) for completion in row]
    metrics = distill(
        drafter,
        policy.model,
        policy.tokenizer,
        [p for p, _ in pairs],
        [c for _, c in pairs],
        config.train,
        temperature=1.0,
    )  # acceptance is 1 - TV at the sampling temperature
    return drafter, metrics


def refresh_drafter(
    registry: CheckpointRegistry,
    version: int,
    prompts: Sequence[str],
    heldout_prompts: Sequence[str],
    config: DrafterConfig = DrafterConfig(),
) -> dict[str, Any]:
    """Distill, measure and publish the drafter of policy `version`; returns the metadata it was published with."""
    if not heldout_prompts:
        raise ValueError("measuring a drafter needs held-out prompts")
    loaded = registry.load(version)
    policy = LocalPolicy(loaded.model, loaded.tokenizer, loaded.version)
    try:
        previous, previous_info = registry.load_drafter(version)
    except NoCheckpoint:
        previous, previous_info = None, None
    drafter, metrics = distill_drafter(policy, prompts, config, start=previous)
    rate = acceptance_rate(
        policy,
        drafter,
        heldout_prompts,
        config.draft_tokens,
        config.sample_temperature,
        config.max_new_tokens,
        config.seed,
    )
    metadata = {
        "acceptance_rate": rate,
        "acceptance_k": config.draft_tokens,
        "acceptance_temperature": config.sample_temperature,
        "heldout_prompts": len(heldout_prompts),
        "training_prompts": len(prompts),
        "distill_steps": int(metrics["steps"]),
        "distill_kl": metrics["final_kl"],
        "warm_start_from": None if previous_info is None else previous_info.distilled_from,
        "num_layers": config.num_layers,
    }
    registry.publish_drafter(version, drafter, metadata)
    return metadata
