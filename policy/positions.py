"""Position schemes of the policy: which position id each token gets and what the rotary embedding does with it.

The scheme is part of a checkpoint's `config.json` (`position_scheme`), so every loader runs a version as it
was trained:

  rope     positions 0, 1, 2, ... rotated by Mixtral's rotary embedding (the default).
  nope     no positional signal at all: the rotation is the identity. The config's rotary type is `nope`, whose
           inverse frequencies are all zero (cos 1, sin 0 at every position). A huge `rope_theta` does not do
           this: the first rotary frequency is theta^0 = 1 radian per token whatever theta is.
  coupled  digits of equal significance share a position id (position coupling, Cho et al. 2024): every token's
           id is its place in its run of digits or of other tokens (from 1). Written units first, the k-th digit
           of each operand and of the sum is the digit of significance k and gets id k, and the token before the
           sum's k-th digit sits one id below the operand digits it reads, whatever the length; the other tokens
           count within their runs, so the text around the numbers keeps an order. The ids are passed to the
           forward as `position_ids`. Cho et al. add a random start offset in training because their positions are
           absolute embeddings; rotary attention sees only differences of ids, so a shift of every id changes
           nothing and none is drawn.

Loading through `transformers`: `import verifarm.policy.positions` first (it registers the `nope` rotary type;
without it `from_pretrained` of a nope checkpoint fails with a KeyError rather than silently rotating). A coupled
checkpoint loads as is, but its forward needs `position_ids=coupled_position_ids(input_ids)`; `generate` numbers
tokens 0, 1, 2, ... and cannot run it (sample through `LocalPolicy`, which does).
"""

from __future__ import annotations

import torch
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, RotaryEmbeddingConfigMixin

from verifarm.policy.tokenizer import SPECIAL_TOKENS

ROPE, NOPE, COUPLED = "rope", "nope", "coupled"
POSITION_SCHEMES = (ROPE, NOPE, COUPLED)
NOPE_ROTARY_TYPE = "nope"
# The byte-level tokenizer's ids of "0".."9" (id = number of special tokens + byte value).
FIRST_DIGIT_ID = len(SPECIAL_TOKENS) + ord("0")
LAST_DIGIT_ID = len(SPECIAL_TOKENS) + ord("9")


def _nope_inverse_frequencies(config, device=None, seq_len=None, **_) -> tuple[torch.Tensor, float]:
    """Rotary init function of the `nope` type: all-zero inverse frequencies, so every rotation is the identity."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return torch.zeros(head_dim // 2, dtype=torch.float, device=device), 1.0


def _validate_nope_rope_parameters(self, rope_parameters: dict, ignore_keys: set | None = None) -> None:
    unknown = set(rope_parameters) - {"rope_type", "rope_theta"} - set(ignore_keys or ())
    if unknown:
        raise ValueError(f"the nope rotary type takes no parameters, got {sorted(unknown)}")


# Registered once on import: transformers looks rotary types up in this table when it builds (and re-initialises)
# a model's rotary embedding, and validates a config's rotary parameters through the mixin's method.
ROPE_INIT_FUNCTIONS[NOPE_ROTARY_TYPE] = _nope_inverse_frequencies
# The mixin declares no such attribute: transformers finds a rotary type's validator by this name at run time.
RotaryEmbeddingConfigMixin._validate_nope_rope_parameters = _validate_nope_rope_parameters  # type: ignore[attr-defined]


def rotary_parameters(scheme: str, rope_theta: float) -> dict:
    """The config's `rope_parameters` for a position scheme."""
    check_scheme(scheme)
    return {"rope_type": NOPE_ROTARY_TYPE if scheme == NOPE else "default", "rope_theta": rope_theta}


def check_scheme(scheme: str) -> str:
    if scheme not in POSITION_SCHEMES:
        raise ValueError(f"unknown position scheme {scheme!r}; choose one of {POSITION_SCHEMES}")
    return scheme


def position_scheme(config) -> str:
    """The scheme a model config declares (configs from before schemes existed are rope)."""
    return check_scheme(getattr(config, "position_scheme", ROPE))


def is_digit(token_ids: torch.Tensor) -> torch.Tensor:
    return (token_ids >= FIRST_DIGIT_ID) & (token_ids <= LAST_DIGIT_ID)


def _token_class(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """1 for a digit, 0 for another token, -1 for padding (its own run, so a left-padded row counts from 1)."""
    token_class = is_digit(input_ids).long()
    if attention_mask is not None:
        token_class = token_class.masked_fill(attention_mask == 0, -1)
    return token_class


def coupled_position_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Coupled ids of token rows (B, T): each token's place (from 1) in its run of digits or of other tokens."""
    token_class = _token_class(input_ids, attention_mask)
    steps = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
    starts = torch.ones_like(token_class, dtype=torch.bool)
    starts[..., 1:] = token_class[..., 1:] != token_class[..., :-1]
    run_start = torch.where(starts, steps, torch.zeros_like(steps)).cummax(-1).values
    return steps - run_start + 1


def next_coupled_ids(tokens: torch.Tensor, previous_tokens: torch.Tensor, previous_ids: torch.Tensor) -> torch.Tensor:
    """Coupled ids (B,) of `tokens` that follow `previous_tokens`, whose ids were `previous_ids` (decoding)."""
    same_run = is_digit(tokens) == is_digit(previous_tokens)
    return torch.where(same_run, previous_ids + 1, torch.ones_like(previous_ids))


def forward_position_ids(model, input_ids: torch.Tensor) -> torch.Tensor | None:
    """The `position_ids` a forward of `model` over right-padded rows (B, T) needs: None (the model counts
    tokens itself) except for coupled positions (padding at the end of a row forms its own run)."""
    if position_scheme(model.config) != COUPLED:
        return None
    return coupled_position_ids(input_ids)
