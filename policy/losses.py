"""Training losses over a causal LM and a padded batch: LM, SFT, group-relative policy gradient, distillation.

Every loss returns `(loss, metrics)`; for a Mixture-of-Experts model the load-balancing loss and router
z-loss (weighted by the config's coefficients) are added to the loss and reported in the metrics.
Masks follow `verifarm.policy.training.Batch`: `completion_mask[b, t]` marks `input_ids[b, t]` as a
completion token; the logits at position t predict token t + 1, so targets are the masks shifted by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from verifarm.policy.model import moe_aux_losses
from verifarm.policy.positions import forward_position_ids

_ADVANTAGE_EPS = 1e-4


@dataclass
class ForwardOutput:
    logits: torch.Tensor  # (B, T, V)
    aux_loss: torch.Tensor  # scalar; zero for a dense model
    aux_metrics: dict[str, float]


def _is_moe(model) -> bool:
    return hasattr(model.config, "num_local_experts") and hasattr(model.config, "router_aux_loss_coef")


def forward_with_aux(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ForwardOutput:
    """One forward pass; for an MoE model also the weighted auxiliary losses over the real (unpadded) tokens."""
    _check_shapes(input_ids, attention_mask)
    position_ids = forward_position_ids(model, input_ids)
    if not _is_moe(model):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return ForwardOutput(logits.logits, logits.logits.new_zeros(()), {})
    outputs = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        output_router_logits=True,
        use_cache=False,
    )
    aux, metrics = moe_aux_losses(model, outputs.router_logits, attention_mask)
    return ForwardOutput(outputs.logits, aux, metrics)


def target_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(input_ids[:, t] | input_ids[:, :t]) aligned with `input_ids`; column 0 (no context) is zero. (B, T)"""
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    picked = logprobs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return F.pad(picked, (1, 0))


@torch.no_grad()
def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-token log-probabilities under `model`, aligned with `input_ids` (the `old_logprobs` of `grpo_loss`)."""
    position_ids = forward_position_ids(model, input_ids)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return target_logprobs(logits.logits, input_ids)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def _check_shapes(input_ids: torch.Tensor, attention_mask: torch.Tensor, *others: torch.Tensor) -> None:
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, time), got shape {tuple(input_ids.shape)}")
    if input_ids.shape[1] < 2:
        raise ValueError("sequences need at least two tokens (a context and a target)")
    for tensor in (attention_mask, *others):
        if tensor.shape != input_ids.shape:
            raise ValueError(f"masks must match input_ids {tuple(input_ids.shape)}, got {tuple(tensor.shape)}")


def _target_mask(attention_mask: torch.Tensor, completion_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Float mask aligned with `input_ids`: 1 where the token is a real target (never column 0)."""
    mask = attention_mask.float().clone()
    if completion_mask is not None:
        mask = mask * completion_mask.float()
    mask[:, 0] = 0.0
    return mask


def _with_aux(core: torch.Tensor, forward: ForwardOutput, metrics: dict[str, float]) -> tuple[torch.Tensor, dict]:
    loss = core + forward.aux_loss
    metrics.update(forward.aux_metrics)
    metrics["loss"] = float(loss.detach())
    return loss, metrics


def _token_nll(forward: ForwardOutput, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, float]:
    if mask.sum() == 0:
        raise ValueError("the batch has no target tokens (empty completions or all padding)")
    nll = -_masked_mean(target_logprobs(forward.logits, input_ids), mask)
    return nll, float(mask.sum())


def lm_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Next-token cross-entropy over every real token (pre-training), plus the MoE auxiliary losses."""
    forward = forward_with_aux(model, input_ids, attention_mask)
    nll, tokens = _token_nll(forward, input_ids, _target_mask(attention_mask))
    return _with_aux(nll, forward, {"lm_loss": float(nll.detach()), "tokens": tokens})


def sft_loss(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on completion tokens only (rejection-sampling SFT on verified rollouts)."""
    _check_shapes(input_ids, attention_mask, completion_mask)
    forward = forward_with_aux(model, input_ids, attention_mask)
    nll, tokens = _token_nll(forward, input_ids, _target_mask(attention_mask, completion_mask))
    return _with_aux(nll, forward, {"sft_loss": float(nll.detach()), "tokens": tokens})


def group_advantages(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """(reward - group mean) / group std for each sample; zero for a group whose rewards are all equal."""
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"rewards and group_ids must be 1-D of equal length, got {tuple(rewards.shape)} "
            f"and {tuple(group_ids.shape)}"
        )
    rewards = rewards.float()
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), device=rewards.device).index_add_(0, inverse, rewards)
    means = sums / counts
    centred = rewards - means[inverse]
    squares = torch.zeros(len(counts), device=rewards.device).index_add_(0, inverse, centred**2)
    # Unbiased std like the GRPO reference; a singleton group has no spread and gets advantage 0.
    stds = torch.sqrt(squares / (counts - 1).clamp(min=1))
    return centred / (stds[inverse] + _ADVANTAGE_EPS)


def grpo_loss(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    clip: float = 0.2,
    ref_model=None,
    kl_coef: float = 0.0,
    behaviour_logprobs: torch.Tensor | None = None,
    tis_cap: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Group-relative policy gradient with a clipped importance ratio (GRPO), averaged over completion tokens.

    `old_logprobs` (B, T) are per-token log-probabilities aligned with `input_ids` (only completion
    positions are read) under the weights the ratio is taken against; None means on-policy (ratio 1).
    `rewards` and `group_ids` are (B,): the n samples of one task share a group id. With `ref_model` and
    `kl_coef > 0`, a per-token KL penalty to the reference (the k3 estimator) is added.

    Off-policy correction: `behaviour_logprobs` (B, T) are the log-probabilities the sampler recorded
    when it drew the tokens. A low-precision sampler (int8 weights, a bfloat16 cache) draws from a
    slightly different distribution than the float32 weights, so each token's objective is weighted by
    the truncated importance weight min(exp(old - behaviour), `tis_cap`), detached (truncated importance
    sampling, as verl and slime apply to FP8 rollouts). NaN marks a position with no recorded log-prob
    (weight 1). Speculative sampling alone needs no correction: it records the policy's own log-probs.
    """
    _check_shapes(input_ids, attention_mask, completion_mask)
    if rewards.shape != (input_ids.shape[0],):
        raise ValueError(f"rewards must be ({input_ids.shape[0]},), one per sequence, got {tuple(rewards.shape)}")
    if not 0.0 < clip < 1.0:
        raise ValueError(f"clip must lie in (0, 1), got {clip}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if kl_coef > 0 and ref_model is None:
        raise ValueError("kl_coef > 0 needs a ref_model to measure the KL against")
    if not (math.isfinite(tis_cap) and tis_cap >= 1.0):
        raise ValueError(f"tis_cap must be a finite number >= 1 (the largest importance weight), got {tis_cap}")
    if behaviour_logprobs is not None and behaviour_logprobs.shape != input_ids.shape:
        raise ValueError(
            f"behaviour_logprobs must be aligned with input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(behaviour_logprobs.shape)}"
        )
    mask = _target_mask(attention_mask, completion_mask)
    if mask.sum() == 0:
        raise ValueError("the batch has no completion tokens")

    forward = forward_with_aux(model, input_ids, attention_mask)
    logprobs = target_logprobs(forward.logits, input_ids)  # (B, T)
    if old_logprobs is None:
        old_logprobs = logprobs.detach()
    elif old_logprobs.shape != input_ids.shape:
        raise ValueError(
            f"old_logprobs must be aligned with input_ids {tuple(input_ids.shape)}, got {tuple(old_logprobs.shape)}"
        )
    advantages = group_advantages(rewards.to(logprobs.device), group_ids.to(logprobs.device))[:, None]  # (B, 1)

    # Zero the log-ratio outside completions so padding cannot overflow exp().
    log_ratio = (logprobs - old_logprobs.to(logprobs).detach()) * mask
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    objective = torch.minimum(unclipped, clipped)
    tis_metrics = {}
    if behaviour_logprobs is not None:
        weights = truncated_importance_weights(
            old_logprobs.to(logprobs), behaviour_logprobs.to(logprobs), mask, tis_cap
        )
        objective = objective * weights
        tis_metrics = {
            "tis_weight_mean": float(_masked_mean(weights, mask)),
            "tis_truncated_fraction": float(_masked_mean((weights >= tis_cap).float(), mask)),
        }
    policy_loss = -_masked_mean(objective, mask)

    metrics = {
        "pg_loss": float(policy_loss.detach()),
        "reward_mean": float(rewards.float().mean()),
        "advantage_abs_mean": float(advantages.abs().mean()),
        "ratio_mean": float(_masked_mean(ratio.detach(), mask)),
        "clip_fraction": float(_masked_mean(((ratio - 1.0).abs() > clip).float(), mask)),
        "tokens": float(mask.sum()),
        **tis_metrics,
    }
    core = policy_loss
    if ref_model is not None:
        with torch.no_grad():
            ref_logprobs = sequence_logprobs(ref_model, input_ids, attention_mask)
        delta = (ref_logprobs - logprobs) * mask
        kl = _masked_mean(torch.exp(delta) - delta - 1.0, mask)
        metrics["kl_to_ref"] = float(kl.detach())
        core = core + kl_coef * kl
    return _with_aux(core, forward, metrics)


def truncated_importance_weights(
    target_logprobs: torch.Tensor, behaviour_logprobs: torch.Tensor, mask: torch.Tensor, cap: float
) -> torch.Tensor:
    """min(exp(target - behaviour), cap) per token (B, T), detached; 1 outside `mask` and where the
    behaviour log-prob is NaN (not recorded). The log-ratio is zeroed there before exp() so it cannot overflow."""
    known = (mask > 0) & ~torch.isnan(behaviour_logprobs)
    log_weight = torch.where(known, target_logprobs.detach() - behaviour_logprobs.nan_to_num(0.0), 0.0)
    return torch.exp(log_weight.clamp(max=math.log(cap)))


def distill_loss(
    student,
    teacher,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """KL(teacher || student) of the token distributions softened by `temperature`, on completion targets.

    Scaled by T^2 (Hinton et al.) so gradients keep their size across temperatures.
    """
    _check_shapes(input_ids, attention_mask, completion_mask)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student.config.vocab_size != teacher.config.vocab_size:
        raise ValueError(
            f"student and teacher must share a vocabulary, got sizes {student.config.vocab_size} "
            f"and {teacher.config.vocab_size}"
        )
    mask = _target_mask(attention_mask, completion_mask)[:, 1:]  # (B, T-1): positions whose next token is a target
    if mask.sum() == 0:
        raise ValueError("the batch has no completion tokens")
    forward = forward_with_aux(student, input_ids, attention_mask)
    with torch.no_grad():
        teacher_logits = teacher(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=forward_position_ids(teacher, input_ids),
            use_cache=False,
        ).logits
    student_logp = torch.log_softmax(forward.logits[:, :-1].float() / temperature, dim=-1)
    teacher_logp = torch.log_softmax(teacher_logits[:, :-1].float() / temperature, dim=-1)
    per_token = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)  # (B, T-1)
    kl = _masked_mean(per_token, mask) * temperature**2
    return _with_aux(kl, forward, {"distill_kl": float(kl.detach()), "tokens": float(mask.sum())})
