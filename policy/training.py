"""Batches and training loops: encode prompt/completion pairs or documents, run AdamW on a budget
(pre-training on documents, distillation of a student on a teacher's completions).

Used by the learning test, the continual trainer, the demo and the drafter of speculative sampling. Batches are right-padded; the tokenizer
prepends <bos> to the prompt (or document) and an <eos> closes each completion, so a trained policy stops.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from verifarm.policy.losses import distill_loss, lm_loss

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # (B, T) long, right-padded with the tokenizer's pad id
    attention_mask: torch.Tensor  # (B, T) long, 1 on real tokens
    completion_mask: torch.Tensor  # (B, T) long, 1 on completion tokens (and their <eos>)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.completion_mask.to(device))

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def _pad(rows: list[list[int]], masks: list[list[int]], pad_id: int) -> Batch:
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, mask) in enumerate(zip(rows, masks)):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
        completion_mask[i, : len(row)] = torch.tensor(mask, dtype=torch.long)
    return Batch(input_ids, attention_mask, completion_mask)


def _check_max_length(max_length: int | None) -> None:
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be >= 2 (a context and a target), got {max_length}")


def encode_batch(
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    max_length: int | None = None,
    append_eos: bool = True,
) -> Batch:
    """Encode prompt + completion pairs; `completion_mask` marks the completion tokens only.

    Rows longer than `max_length` are cut from the right (the prompt is kept whole when it fits).
    """
    if len(prompts) != len(completions):
        raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions")
    if not prompts:
        raise ValueError("cannot encode an empty batch")
    _check_max_length(max_length)
    rows, masks = [], []
    for prompt, completion in zip(prompts, completions):
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if append_eos:
            completion_ids = completion_ids + [tokenizer.eos_token_id]
        row = prompt_ids + completion_ids
        mask = [0] * len(prompt_ids) + [1] * len(completion_ids)
        if max_length is not None:
            row, mask = row[:max_length], mask[:max_length]
        rows.append(row)
        masks.append(mask)
    return _pad(rows, masks, tokenizer.pad_token_id)


def align_behaviour_logprobs(
    batch: Batch, sampled_ids: Sequence[Sequence[int] | None], sampled_logprobs: Sequence[Sequence[float] | None]
) -> torch.Tensor:
    """The sampler's recorded log-probs laid on `batch`'s completion positions (B, T), for `grpo_loss`'s
    `behaviour_logprobs`; NaN (no correction) wherever none applies.

    Completions are re-encoded from text, which can differ from what was sampled (a stop string cut off,
    an eos appended): a row's log-probs are used along the prefix where the re-encoded tokens are the
    sampled ones, and stop at the first difference.
    """
    if not len(sampled_ids) == len(sampled_logprobs) == batch.input_ids.shape[0]:
        raise ValueError(
            f"need token ids and log-probs for each of the {batch.input_ids.shape[0]} rows, got "
            f"{len(sampled_ids)} and {len(sampled_logprobs)}"
        )
    aligned = torch.full(batch.input_ids.shape, float("nan"))
    for row, (ids, logprobs) in enumerate(zip(sampled_ids, sampled_logprobs)):
        if ids is None or logprobs is None:
            continue
        positions = batch.completion_mask[row].nonzero().flatten().tolist()
        for index, position in enumerate(positions[: min(len(ids), len(logprobs))]):
            if int(batch.input_ids[row, position]) != int(ids[index]):
                break
            aligned[row, position] = float(logprobs[index])
    return aligned.to(batch.input_ids.device)


def encode_texts(tokenizer, texts: Sequence[str], max_length: int | None = None, append_eos: bool = True) -> Batch:
    """Encode whole documents for language modelling; every token after <bos> counts as a target."""
    if not texts:
        raise ValueError("cannot encode an empty batch")
    _check_max_length(max_length)
    rows, masks = [], []
    for text in texts:
        row = tokenizer(text, add_special_tokens=True)["input_ids"]
        if append_eos:
            row = row + [tokenizer.eos_token_id]
        if max_length is not None:
            row = row[:max_length]
        rows.append(row)
        masks.append([0] + [1] * (len(row) - 1))
    return _pad(rows, masks, tokenizer.pad_token_id)


Schedule = Literal["cosine", "linear", "constant"]


@dataclass(frozen=True)
class TrainConfig:
    """One pre-training run: AdamW with warm-up and decay, stopped by steps or by wall time, whichever first.

    With `max_seconds` set, the decay follows elapsed time (progress = max(step share, time share)), so
    a time-budgeted run still ends at the low learning rate.
    """

    steps: int = 1000
    max_seconds: float | None = None
    batch_size: int = 32
    learning_rate: float = 1e-3
    schedule: Schedule = "cosine"
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    max_length: int = 256
    seed: int = 0
    log_every: int = 0  # 0: no progress logging

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise ValueError(f"max_seconds must be a positive number or None, got {self.max_seconds}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule must be 'cosine', 'linear' or 'constant', got {self.schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {self.beta1}, {self.beta2}")
        if self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        _check_max_length(self.max_length)
        if self.log_every < 0:
            raise ValueError(f"log_every must be >= 0, got {self.log_every}")


def learning_rate_at(config: TrainConfig, step: int, progress: float) -> float:
    """Learning rate for `step` (0-based) when a share `progress` in [0, 1] of the budget is spent."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    floor = config.learning_rate * config.min_lr_ratio
    if config.schedule == "constant":
        return config.learning_rate
    if config.schedule == "linear":
        return floor + (config.learning_rate - floor) * (1.0 - progress)
    return floor + (config.learning_rate - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms, biases or 1-D router/scale vectors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(config.beta1, config.beta2))


def _set_lr(optimizer, config: TrainConfig, step: int, started: float) -> float | None:
    """Set this step's learning rate; None when the wall-time budget is spent."""
    elapsed = time.perf_counter() - started
    if config.max_seconds is not None and elapsed >= config.max_seconds:
        return None
    progress = step / config.steps
    if config.max_seconds is not None:
        progress = max(progress, elapsed / config.max_seconds)
    lr = learning_rate_at(config, step, progress)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def distill(
    student,
    teacher,
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    config: TrainConfig,
    temperature: float = 1.0,
) -> dict[str, float]:
    """Fit `student` to `teacher`'s next-token distributions on the completion tokens of the given pairs
    (`losses.distill_loss`, the loss of the trainer's distillation mode) until the step or time budget runs out.

    Pairs are drawn in a seeded random order. Returns steps, seconds and final_kl (mean of the last 10 steps).
    """
    if not prompts or len(prompts) != len(completions):
        raise ValueError(
            f"distill needs matching, non-empty prompts and completions, got {len(prompts)} and {len(completions)}"
        )
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = make_optimizer(student, config)
    student.train()
    teacher.eval()
    recent: list[float] = []
    step, started = 0, time.perf_counter()
    while step < config.steps and _set_lr(optimizer, config, step, started) is not None:
        chosen = torch.randint(len(prompts), (config.batch_size,), generator=generator).tolist()
        batch = encode_batch(
            tokenizer, [prompts[i] for i in chosen], [completions[i] for i in chosen], config.max_length
        ).to(student.device)
        loss, metrics = distill_loss(
            student, teacher, batch.input_ids, batch.attention_mask, batch.completion_mask, temperature=temperature
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        recent = (recent + [metrics["distill_kl"]])[-10:]
    student.eval()
    return {
        "steps": float(step),
        "seconds": time.perf_counter() - started,
        "final_kl": sum(recent) / len(recent) if recent else float("nan"),
    }


def pretrain(
    model,
    tokenizer,
    texts: Sequence[str],
    config: TrainConfig,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Next-token training on `texts` (each a whole document) until the step or time budget runs out.

    `on_step(steps_done, {"loss", "lr", "tokens_per_second"})` hears every step (a progress display).
    Documents are drawn in a seeded random order (reshuffled each epoch). Returns summary metrics:
    steps, seconds, tokens, tokens_per_second, final_loss (mean of the last 10 steps), final_lr and the
    last step's MoE auxiliary losses.
    """
    if not texts:
        raise ValueError("pretrain needs at least one text")
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = make_optimizer(model, config)
    model.train()
    order = torch.randperm(len(texts), generator=generator).tolist()
    cursor, step, tokens = 0, 0, 0
    recent: list[float] = []
    last: dict[str, float] = {}
    lr = config.learning_rate
    started = time.perf_counter()
    while step < config.steps:
        step_lr = _set_lr(optimizer, config, step, started)
        if step_lr is None:
            break
        lr = step_lr

        chosen: list[str] = []
        while len(chosen) < config.batch_size:
            if cursor == len(order):
                order, cursor = torch.randperm(len(texts), generator=generator).tolist(), 0
            chosen.append(texts[order[cursor]])
            cursor += 1
        batch = encode_texts(tokenizer, chosen, config.max_length).to(model.device)

        loss, last = lm_loss(model, batch.input_ids, batch.attention_mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

        step += 1
        tokens += batch.tokens
        recent = (recent + [last["lm_loss"]])[-10:]
        if on_step is not None:
            elapsed = time.perf_counter() - started
            on_step(
                step, {"loss": last["lm_loss"], "lr": lr, "tokens_per_second": tokens / elapsed if elapsed else 0.0}
            )
        if config.log_every and step % config.log_every == 0:
            logger.info(
                "step %d lr %.2e lm_loss %.4f aux %.4f", step, lr, last["lm_loss"], last.get("moe_aux_total", 0.0)
            )
    model.eval()
    seconds = time.perf_counter() - started
    metrics = {
        "steps": float(step),
        "seconds": seconds,
        "tokens": float(tokens),
        "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        "final_loss": sum(recent) / len(recent) if recent else float("nan"),
        "final_lr": lr,
    }
    metrics.update({key: value for key, value in last.items() if key.startswith("moe_")})
    return metrics
