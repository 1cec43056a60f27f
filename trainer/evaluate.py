"""Held-out evaluation of a policy version: pass@1 greedy and pass@k per env and difficulty, and held-out loss.

Evaluation tasks come from seeds reserved for evaluation (`EvalConfig.seed`), never from campaign seeds, so
the numbers measure generalisation to unseen problems.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from verifarm.envs.base import Task, TaskFamily
from verifarm.envs.catalog import get_family
from verifarm.rollout.store import RolloutStore
from verifarm.trainer.config import EvalConfig, EvalSuite


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples of which c passed (Chen et al., 2021)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    # 1 - C(n-c, k) / C(n, k), as a product to stay exact in floating point for large n.
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


@dataclass(frozen=True)
class DifficultyResult:
    env_id: str
    difficulty: int
    tasks: int
    pass_at_1: float  # greedy
    pass_at_k: float  # unbiased estimate from `samples` draws at the eval temperature
    k: int
    sampled_pass_rate: float  # mean pass rate of the temperature samples


@dataclass(frozen=True)
class EvalReport:
    policy_version: int
    results: tuple[DifficultyResult, ...]
    heldout_loss: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Flat metric names for the store: `<env>/d<difficulty>/pass@1`, `.../pass@k`, `heldout_loss`."""
        flat: dict[str, float] = {}
        for r in self.results:
            prefix = f"{short_env_name(r.env_id)}/d{r.difficulty}"
            flat[f"{prefix}/pass@1"] = r.pass_at_1
            if not math.isnan(r.pass_at_k):
                flat[f"{prefix}/pass@{r.k}"] = r.pass_at_k
                flat[f"{prefix}/sample_pass_rate"] = r.sampled_pass_rate
        if self.heldout_loss is not None:
            flat["heldout_loss"] = self.heldout_loss
        flat.update(self.extra)
        return flat

    def table(self) -> str:
        lines = [f"policy v{self.policy_version}"]
        for r in self.results:
            lines.append(
                f"  {short_env_name(r.env_id):<14} d={r.difficulty:<2} pass@1={r.pass_at_1:6.1%}  "
                + ("" if math.isnan(r.pass_at_k) else f"pass@{r.k}={r.pass_at_k:6.1%}  ")
                + f"({r.tasks} tasks)"
            )
        if self.heldout_loss is not None:
            lines.append(f"  held-out pre-training loss {self.heldout_loss:.4f}")
        return "\n".join(lines)


def short_env_name(env_id: str) -> str:
    """`verifarm/Addition-v0` -> `Addition-v0` (metric names stay readable)."""
    return env_id.split("/", 1)[-1]


def heldout_tasks(suite: EvalSuite, difficulty: int, count: int, seed: int) -> tuple[list[Task], TaskFamily]:
    """The same `count` held-out tasks for every version evaluated with this seed, and their task family."""
    family = get_family(suite.env_id, **suite.options)
    base = seed + difficulty * 1_000_000
    return [family.generate(seed=base + index, difficulty=difficulty) for index in range(count)], family


def evaluate_suite_difficulty(policy, suite: EvalSuite, difficulty: int, config: EvalConfig) -> DifficultyResult:
    """Greedy pass@1 and sampled pass@k for one env at one difficulty."""
    tasks, family = heldout_tasks(suite, difficulty, config.tasks_per_difficulty, config.seed)
    prompts = [task.prompt for task in tasks]
    greedy = policy.sample(prompts, n=1, temperature=0.0, max_new_tokens=config.max_new_tokens)
    pass_at_1 = sum(family.verify(t, s[0].text).passed for t, s in zip(tasks, greedy)) / len(tasks)
    if config.samples == 0:  # greedy only: the cheap evaluation between rounds
        return DifficultyResult(suite.env_id, difficulty, len(tasks), pass_at_1, float("nan"), config.k, float("nan"))

    pass_k, sample_rate = 0.0, 0.0
    # Seeded per difficulty, so two versions are compared on the same random stream.
    sampled = policy.sample(
        prompts,
        n=config.samples,
        temperature=config.temperature,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed + difficulty,
    )
    for task, samples in zip(tasks, sampled):
        correct = sum(family.verify(task, s.text).passed for s in samples)
        pass_k += pass_at_k(len(samples), correct, config.k)
        sample_rate += correct / len(samples)
    return DifficultyResult(
        env_id=suite.env_id,
        difficulty=difficulty,
        tasks=len(tasks),
        pass_at_1=pass_at_1,
        pass_at_k=pass_k / len(tasks),
        k=config.k,
        sampled_pass_rate=sample_rate / len(tasks),
    )


def evaluate_policy(policy, config: EvalConfig, heldout_texts=None, max_seq_len: int = 256) -> EvalReport:
    """Evaluate a `LocalPolicy` (or any object with its `.sample`) on every suite and difficulty."""
    results = tuple(
        evaluate_suite_difficulty(policy, suite, difficulty, config)
        for suite in config.suites
        for difficulty in suite.difficulties
    )
    loss = None
    if heldout_texts:
        texts = list(heldout_texts)[: config.heldout_loss_documents]
        loss = heldout_loss(policy.model, policy.tokenizer, texts, max_seq_len=max_seq_len)
    return EvalReport(policy_version=policy.version, results=results, heldout_loss=loss)


def heldout_loss(model, tokenizer, texts: list[str], max_seq_len: int = 256, batch_size: int = 16) -> float:
    """Token-weighted mean language-model loss on held-out corpus documents (to watch forgetting)."""
    import torch

    # deferred: torch (here and above) loads only when a loss is computed, not wherever this module is imported
    from verifarm.policy.training import encode_texts

    if not texts:
        raise ValueError("held-out loss needs at least one document")
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = encode_texts(tokenizer, texts[start : start + batch_size], max_length=max_seq_len)
            # Plain next-token cross-entropy, computed here so no MoE auxiliary loss leaks into the number.
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            targets = batch.input_ids[:, 1:].masked_fill(batch.attention_mask[:, 1:] == 0, -100)
            loss_sum = torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum"
            )
            total += float(loss_sum)
            tokens += int((targets != -100).sum())
    model.train(was_training)
    return total / tokens


def latest_evaluations(store: RolloutStore) -> dict[int, dict[str, float]]:
    """The newest value of every metric the trainer stored, per policy version."""
    by_version: dict[int, dict[str, float]] = {}
    for entry in store.metrics():  # oldest step first, so later evaluations overwrite earlier ones
        by_version.setdefault(entry.policy_version, {}).update(entry.metrics)
    return by_version
