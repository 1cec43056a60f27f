"""The speculative-sampling rule: which draft tokens to keep, and the token that follows them.

A cheap drafter proposes k tokens from its distribution p; one forward of the policy scores them and
gives its distribution q at each of the k+1 positions. Draft token i is kept with probability
min(1, q(x_i) / p(x_i)); at the first rejection the next token is drawn from the residual
norm(max(q - p, 0)), and when all k are kept a bonus token is drawn from q at position k. Every emitted
token is then distributed exactly as the policy's own sampling distribution (Leviathan et al. 2023,
"Fast Inference from Transformers via Speculative Decoding"; Chen et al. 2023, "Accelerating Large
Language Model Decoding with Speculative Sampling"), whatever the drafter, so a poor or stale drafter
only costs speed. Greedy decoding is the one-hot case: a draft survives iff it is the policy's argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def sampling_distribution(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The distribution a sampler draws from, float32 (..., V): the softmax at `temperature`, cut to the
    nucleus of mass `top_p` (the top token always survives, unnormalised); temperature 0 is one-hot argmax."""
    logits = logits.float()
    if temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    probs = torch.softmax(logits if temperature == 1 else logits / temperature, dim=-1)
    return nucleus(probs, top_p)


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """`probs` (..., V) with the tokens outside the smallest prefix of mass `top_p` zeroed (not renormalised)."""
    if top_p >= 1.0:
        return probs
    sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
    # Keep the smallest prefix whose mass reaches top_p (the top token always survives).
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
    return torch.zeros_like(probs).scatter_(-1, sorted_ids, sorted_probs.masked_fill(outside, 0.0))


def draw(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of non-negative, unnormalised `weights` (B, V) by inverse-CDF sampling (one
    uniform number per row, where multinomial would draw one per token); (B,) long."""
    cdf = weights.cumsum(dim=-1)  # (B, V)
    total = cdf[:, -1:]
    uniform = torch.rand((cdf.shape[0], 1), generator=generator, device=cdf.device) * total
    # Rounding can put u*total at the total itself; keeping u strictly below the total means the
    # first cdf entry above u always exists and always belongs to a token with mass.
    uniform = torch.minimum(uniform, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, uniform, right=True).squeeze(-1)


# What one draft token adds to a round, in units of the round's verifying forward: a drafter step plus one more
# position in that forward (profiled on the tiny preset, 64 rows: ~0.2 each; see benchmarks/README.md).
DRAFT_COST = 0.4


def best_draft_length(acceptance: float, max_tokens: int, draft_cost: float = DRAFT_COST) -> int:
    """The k in [1, max_tokens] that emits the most tokens per unit of work when each draft is kept with
    probability `acceptance`: a round emits (1 - a^(k+1)) / (1 - a) tokens on average (Leviathan et al. 2023,
    section 3.4) and costs 1 + draft_cost * k. A poor or stale drafter thus gets short rounds, a good one long."""
    a = min(max(acceptance, 0.0), 0.999)
    return max(range(1, max_tokens + 1), key=lambda k: (1 - a ** (k + 1)) / (1 - a) / (1 + draft_cost * k))


@dataclass
class DraftLength:
    """Adaptive k: the per-token acceptance rate estimated over recent rounds, and the k it calls for."""

    max_tokens: int
    # Optimistic start: the first round drafts `max_tokens`, and the estimate falls from there after the first
    # rejections. A start below 1 costs a good drafter (99% of drafts kept on arithmetic at temperature 0.5)
    # rounds of 5, 7, 10, 14 positions where three of 17 emit a whole answer; a poor one pays one long round.
    acceptance: float = 1.0
    memory: float = 0.5  # weight of the estimate so far against the latest round's

    def next(self) -> int:
        return best_draft_length(self.acceptance, self.max_tokens)

    def observe(self, kept: int, rejected: int) -> None:
        """A round's drafts: `kept` in total over its rows, and how many rows rejected one (the rest kept all,
        or were cut at eos or the budget). kept / (kept + rejected) is the maximum-likelihood rate."""
        if kept + rejected:
            self.acceptance = self.memory * self.acceptance + (1 - self.memory) * kept / (kept + rejected)


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one round of drafts, per row."""

    accepted: torch.Tensor  # (B,) long in [0, k]: how many leading draft tokens were kept
    next_tokens: torch.Tensor  # (B,) long: the token emitted after them (residual or bonus draw)


def accept_drafts(
    draft_tokens: torch.Tensor,
    draft_probs: torch.Tensor,
    target_probs: torch.Tensor,
    generator: torch.Generator | None,
    normalized: bool = False,
) -> Verdict:
    """The speculative-sampling rule over a batch whose rows keep different numbers of drafts.

    draft_tokens (B, k) were drawn from draft_probs (B, k, V); target_probs (B, k+1, V) is the policy's
    sampling distribution before each draft token and after the last one. Both are distributions as
    `sampling_distribution` returns them; rows need not sum to 1 (a nucleus comes unnormalised), each
    is normalised here, unless the caller says they are already (`normalized`: no nucleus was cut).
    """
    batch, k = draft_tokens.shape
    if (
        draft_probs.shape[:2] != (batch, k)
        or target_probs.shape[:2] != (batch, k + 1)
        or draft_probs.shape[-1] != target_probs.shape[-1]
    ):
        raise ValueError(
            f"need draft_probs (B, k, V) and target_probs (B, k+1, V) for draft_tokens {(batch, k)}, "
            f"got {tuple(draft_probs.shape)} and {tuple(target_probs.shape)}"
        )
    p_all, q_all = draft_probs.float(), target_probs.float()
    if not normalized:
        p_all, q_all = p_all / p_all.sum(-1, keepdim=True), q_all / q_all.sum(-1, keepdim=True)
    p = p_all.gather(-1, draft_tokens[..., None]).squeeze(-1)  # (B, k)
    q = q_all[:, :k].gather(-1, draft_tokens[..., None]).squeeze(-1)
    uniform = torch.rand((batch, k), generator=generator, device=draft_tokens.device)
    # Keep with probability min(1, q/p): u < q/p, written without a division. Strict, so that a token
    # the policy gives no mass (q = 0, e.g. any non-argmax token when greedy) is never kept.
    keep = uniform * p < q
    accepted = keep.long().cumprod(-1).sum(-1)  # (B,): length of the kept prefix
    # Position k gets p = 0, so its "residual" is q itself: the bonus token after a full acceptance.
    p_padded = torch.cat((p_all, p_all.new_zeros(batch, 1, p_all.shape[-1])), dim=1)  # (B, k+1, V)
    at = accepted[:, None, None].expand(-1, 1, p_all.shape[-1])
    q_at, p_at = q_all.gather(1, at).squeeze(1), p_padded.gather(1, at).squeeze(1)  # (B, V)
    residual = (q_at - p_at).clamp(min=0)
    # A rejection implies q < p somewhere and hence q > p elsewhere; an all-zero residual is rounding
    # where p and q agree, and then q itself is the exact distribution to draw from.
    residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, q_at)
    return Verdict(accepted, draw(residual, generator))
