"""A fast batched decoder for Mixtral-style MoE models, in the spirit of gpt-fast.

It reads the very same weights as `transformers.MixtralForCausalLM` (views, not copies, except the
fused q/k/v matrix) and runs them with a preallocated KV cache, grouped-query attention without
repeating the cache, and the experts computed as one batched product over the stacked expert
weights (a grouped GEMM, no Python loop over experts). `policy.sampling` drives it: token by token with
`step`, or, for speculative sampling, with `extend`, which scores several tokens per row at per-row cache
slots. Long prompts are attended once per prompt for all the rows sampling them (cascade attention); short
ones sit in each row's own cache (`KVCache.prompts_per_row`), one attention a layer. `DecoderOptions`
selects int8 weights (`policy.quantize`) and a lower-precision KV cache.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import MixtralForCausalLM, PreTrainedModel

from verifarm.policy.positions import NOPE_ROTARY_TYPE
from verifarm.policy.quantize import Int8Experts, Int8Linear


@dataclass
class KVCache:
    """Preallocated keys and values of every layer in one tensor; `valid[b, s]` says slot s of row b holds a
    real token.

    `kv[layer, 0]` holds a layer's keys and `kv[layer, 1]` its values, each head's slots contiguous (S, D) as
    the attention kernels read them: a decode step writes a token's keys and values with one copy, and the
    keys of every (row, head) of a layer read as one batch of matrices (B*Hkv, S, D), a view (`attend_rows`).
    """

    kv: torch.Tensor  # (L, 2, B, Hkv, S, D)
    valid: torch.Tensor  # (B, S) bool

    @classmethod
    def allocate(
        cls, layers: int, batch: int, kv_heads: int, slots: int, head_dim: int, dtype: torch.dtype, device: torch.device
    ) -> KVCache:
        return cls(
            kv=torch.zeros((layers, 2, batch, kv_heads, slots, head_dim), dtype=dtype, device=device),
            valid=torch.zeros(batch, slots, dtype=torch.bool, device=device),
        )

    def keys(self, layer: int) -> torch.Tensor:
        """(B, Hkv, S, D), a view."""
        return self.kv[layer, 0]

    def values(self, layer: int) -> torch.Tensor:
        """(B, Hkv, S, D), a view."""
        return self.kv[layer, 1]

    def select_rows(self, rows: torch.Tensor) -> KVCache:
        """The cache of a subset (or repetition) of batch rows, e.g. to drop finished sequences."""
        return KVCache(self.kv.index_select(2, rows), self.valid.index_select(0, rows))

    def prompts_per_row(self, rows: torch.Tensor, free_slots: int) -> KVCache:
        """A cache for batch rows sampling the prompts `rows` (B,) of this prompt cache (P, W slots): each row
        gets its prompt's keys and values in slots [0, W) and `free_slots` more for its generated tokens."""
        layers, _, _, heads, width, head_dim = self.kv.shape
        kv = self.kv.new_zeros((layers, 2, rows.shape[0], heads, width + free_slots, head_dim))
        kv[..., :width, :] = self.kv.index_select(2, rows)
        valid = self.valid.new_zeros((rows.shape[0], width + free_slots))
        valid[:, :width] = self.valid.index_select(0, rows)
        return KVCache(kv, valid)

    def prompt_bias(self, width: int) -> torch.Tensor:
        """The additive attention bias (B, S) of a `prompts_per_row` cache whose prompts fill slots [0, width):
        -inf at their left padding, 0 at every other slot (the generated ones, valid once written)."""
        bias = torch.zeros(self.valid.shape, dtype=self.kv.dtype, device=self.kv.device)
        bias[:, :width].masked_fill_(~self.valid[:, :width], float("-inf"))
        return bias


@dataclass(frozen=True)
class DecoderOptions:
    """Precision of the fast decoder. The defaults run the model exactly as `transformers` does; int8
    weights and a bfloat16 KV cache trade a bounded error (see tests/policy/test_quantize.py) for speed
    or memory, and rollouts sampled with them need the trainer's off-policy correction."""

    int8_weights: bool = False  # attention output, experts and output head as int8 with per-channel scales
    kv_cache_dtype: torch.dtype | None = None  # None: the model's dtype; torch.bfloat16 halves the cache

    def __post_init__(self) -> None:
        if self.kv_cache_dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"kv_cache_dtype must be None, float32, bfloat16 or float16, got {self.kv_cache_dtype}")

    @property
    def exact(self) -> bool:
        return not self.int8_weights and self.kv_cache_dtype is None


Weight = torch.Tensor | Int8Linear


def linear(x: torch.Tensor, weight: Weight) -> torch.Tensor:
    """x W^T for a float weight (out, in) or an int8 one."""
    return weight(x) if isinstance(weight, Int8Linear) else F.linear(x, weight)


@dataclass(frozen=True)
class _LayerWeights:
    input_norm: torch.Tensor  # (C,)
    qkv: Weight  # ((H + 2*Hkv) * D, C)
    out: Weight  # (C, H*D)
    post_norm: torch.Tensor  # (C,)
    router: torch.Tensor  # (E, C)
    gate_up: torch.Tensor | Int8Experts  # (E, C, 2I): transposed views of Mixtral's (E, 2I, C)
    down: torch.Tensor | Int8Experts  # (E, I, C)


def _int8_layer(w: _LayerWeights) -> _LayerWeights:
    """A layer's attention output and experts in int8, from the dense weights the decoder starts with.

    The query/key/value projection stays in float: queries and keys decide which position (which digit) a token
    attends to, and their int8 error cost 1.6-2.0 points of held-out pass@1 on 3-digit additions, where the
    attention output, the experts and the output head in int8 cost none measurable (benchmarks/README.md,
    rollout quality)."""
    if not (
        isinstance(w.qkv, torch.Tensor)
        and isinstance(w.out, torch.Tensor)
        and isinstance(w.gate_up, torch.Tensor)
        and isinstance(w.down, torch.Tensor)
    ):
        raise TypeError("the layer's weights are int8 already")
    return _LayerWeights(
        w.input_norm,
        w.qkv,
        Int8Linear(w.out),
        w.post_norm,
        w.router,
        Int8Experts.from_weight(w.gate_up),
        Int8Experts.from_weight(w.down),
    )


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Mixtral's RMSNorm: normalised in float32, then scaled in the model dtype."""
    if x.dtype == torch.float32:
        # One fused call, and the very same products as the formula below (scaling commutes).
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def batched_moe(
    x: torch.Tensor, router: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor, top_k: int
) -> torch.Tensor:
    """Mixtral's sparse MoE feed-forward for x (N, C) as one grouped product over the stacked experts,
    whose weights come transposed: gate_up (E, C, 2I), down (E, I, C).

    The N*k (token, expert) assignments are sorted by expert, and each expert matrix runs as one
    grouped GEMM over the contiguous slices (no Python loop over experts, no dropped token).
    """
    if router.shape[0] == 1:
        # One expert (a drafter's dense block): its routing weight is softmax of one logit, exactly 1.
        gate, up = (x @ gate_up[0]).chunk(2, dim=-1)
        return F.silu(gate).mul_(up) @ down[0]
    # Softmax over the top-k logits equals Mixtral's renormalised top-k of the full softmax.
    top_logits, top_experts = F.linear(x, router).topk(top_k)  # (N, k)
    top_weights = top_logits.softmax(-1, dtype=torch.float32).to(x.dtype)
    flat_experts = top_experts.view(-1)  # (N*k,)
    order = flat_experts.argsort(stable=True)
    token_of = order // top_k  # the token of each expert-sorted assignment
    counts = torch.bincount(flat_experts, minlength=router.shape[0])  # (E,)
    offsets = counts.cumsum(0, dtype=torch.int32)  # group ends, shared by both products
    gate, up = _grouped_linear(x[token_of], gate_up, counts, offsets).chunk(2, dim=-1)  # (N*k, I) each
    expert_out = _grouped_linear(F.silu(gate).mul_(up), down, counts, offsets)  # (N*k, C)
    expert_out.mul_(top_weights.view(-1, 1)[order])
    return torch.zeros_like(x).index_add_(0, token_of, expert_out)


def _grouped_linear(
    rows: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor, offsets: torch.Tensor
) -> torch.Tensor:
    """rows (M, in) sorted by group, weights (G, in, out), counts (G,) with their int32 cumsum
    `offsets`: row i times its group's weight."""
    if rows.device.type == "cpu" and rows.dtype in (torch.float32, torch.bfloat16, torch.float16):
        return F.grouped_mm(rows, weights, offs=offsets)
    # Elsewhere (GPU kernels want bf16 and aligned shapes): pad groups to the largest one and use bmm.
    groups = weights.shape[0]
    capacity = int(counts.max())
    starts = offsets - counts
    group_of = torch.repeat_interleave(torch.arange(groups, device=rows.device), counts)
    slot = torch.arange(rows.shape[0], device=rows.device) - starts[group_of]
    padded = rows.new_zeros(groups, capacity, rows.shape[1])
    padded[group_of, slot] = rows
    return torch.bmm(padded, weights)[group_of, slot]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Mixtral's rotate-half rotary embedding, x * cos + rotate_half(x) * sin, with the sign of the
    first half of sin folded in so that rotate_half becomes a roll; x (..., D), cos/sin broadcastable.
    Where cos is 1 and sin 0 (the value heads of a decode step) x comes back exactly."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


@dataclass(frozen=True)
class PromptGroups:
    """Which batch rows continue which prompt, laid out so one matmul serves a prompt's rows together.

    `index[p, j]` is the j-th batch row sampling prompt p (padded with the dummy row `rows`), and
    `position[b]` is the flat place (p * width + j) of row b in that layout. `aligned` says the
    layout is the batch itself (rows sorted by prompt, every prompt with `width` rows, no padding),
    so a decode step may view the batch as (P, R) instead of gathering it.
    """

    index: torch.Tensor  # (P, R) long
    position: torch.Tensor  # (B,) long
    rows: int
    aligned: bool = False

    @classmethod
    def from_prompt_of(cls, prompt_of: list[int], prompts: int, device: torch.device) -> PromptGroups:
        """Groups for rows whose prompts are `prompt_of` (each in [0, prompts))."""
        if any(not 0 <= p < prompts for p in prompt_of):
            raise ValueError(f"prompt indices must lie in [0, {prompts}), got {sorted(set(prompt_of))}")
        members: list[list[int]] = [[] for _ in range(prompts)]
        for row, prompt in enumerate(prompt_of):
            members[prompt].append(row)
        width = max(1, max(len(m) for m in members))
        rows = len(prompt_of)
        index = [m + [rows] * (width - len(m)) for m in members]
        position = [0] * rows
        for prompt, member_rows in enumerate(members):
            for slot, row in enumerate(member_rows):
                position[row] = prompt * width + slot
        aligned = position == list(range(rows)) and rows == prompts * width
        return cls(
            torch.tensor(index, device=device), torch.tensor(position, device=device, dtype=torch.long), rows, aligned
        )


@dataclass(frozen=True)
class PromptSegment:
    """Prompts [start, stop) with their prefilled cache trimmed to the longest of them, and the
    attention bias (P_s, 1, 1, W_s) that is -inf at their left padding."""

    start: int
    stop: int
    cache: KVCache
    bias: torch.Tensor


def split_prompt_cache(cache: KVCache, lengths: list[int]) -> list[PromptSegment]:
    """Cut a left-padded prompt cache (P, W slots) into at most two runs of prompts, each trimmed.

    Decoding attends to every slot of the prompt cache, padding included, so short prompts beside
    long ones waste most of that work. Prompts sorted by length split where the padded area drops
    most; the split is taken only when it saves at least a quarter of it (each run costs more ops).
    """
    prompts, width = cache.valid.shape
    if len(lengths) != prompts or any(not 1 <= n <= width for n in lengths):
        raise ValueError(f"need one length in [1, {width}] per prompt ({prompts}), got {lengths}")
    whole = prompts * max(lengths)
    best_area, best_cut = whole, None
    for cut in range(1, prompts):
        area = cut * max(lengths[:cut]) + (prompts - cut) * max(lengths[cut:])
        if area < best_area:
            best_area, best_cut = area, cut
    bounds = [0, prompts] if best_cut is None or best_area > 0.75 * whole else [0, best_cut, prompts]
    segments = []
    for start, stop in itertools.pairwise(bounds):
        first = width - max(lengths[start:stop])  # left padding: real tokens sit at the end
        part = KVCache(cache.kv[:, :, start:stop, :, first:].contiguous(), cache.valid[start:stop, first:])
        bias = torch.zeros(part.valid.shape, dtype=cache.kv.dtype, device=part.valid.device)
        bias.masked_fill_(~part.valid, float("-inf"))
        segments.append(PromptSegment(start, stop, part, bias[:, None, None, :]))
    return segments


# PyTorch's fused CPU attention kernel, which also returns the log-sum-exp that merging needs.
_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def attend(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q (N, H, Q, D) over keys and values (N, H, S, D) plus an additive bias broadcastable
    to (N, H, Q, S): the output (N, H, Q, D) and the float32 log-sum-exp of the scores (N, H, Q), which
    `merge_attention` needs to join the parts of a split attention. A cache kept in a lower precision than
    q (a bfloat16 KV cache) is read up to q's dtype: it saves memory, the products stay in q's precision."""
    if keys.dtype != q.dtype:
        keys, values = keys.to(q.dtype), values.to(q.dtype)
    if bias is not None and bias.dtype != q.dtype:
        bias = bias.to(q.dtype)
    if _CPU_FLASH is not None and q.device.type == "cpu" and q.dtype == torch.float32:
        return _CPU_FLASH(q, keys, values, attn_mask=bias, scale=scale)
    return attend_reference(q, keys, values, bias, scale)


def attend_reference(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`attend` in plain tensor ops, for other devices and dtypes. Products run in the model dtype, as
    `transformers` runs them; the softmax and the output come in float32."""
    scores = torch.matmul(q * scale, keys.transpose(-1, -2)).float()
    if bias is not None:
        scores = scores + bias
    peak = scores.amax(dim=-1, keepdim=True)
    weights = (scores - peak).exp()
    total = weights.sum(dim=-1, keepdim=True)
    out = torch.matmul(weights.to(values.dtype), values).float() / total
    return out, (peak + total.log()).squeeze(-1)


def attend_rows(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor, scale: float
) -> torch.Tensor:
    """Attention of q (B, Hkv, Q, D) over keys and values (B, Hkv, S, D) of a `KVCache` layer (views whose
    (row, head) pairs merge into one batch dimension) with an additive bias broadcastable to (B*Hkv, Q, S);
    (B, Hkv, Q, D), no log-sum-exp. Two batched products and a softmax: for a handful of queries per head,
    as decoding has, about half the time of the fused kernel, whose per-head overhead then dominates
    (64 rows x 2 heads x 2 queries over 61 slots: 67 against 128 us on a 2-core CPU). The softmax runs in
    float32 whatever q's dtype."""
    batch, kv_heads, queries, head_dim = q.shape
    if keys.dtype != q.dtype:
        keys, values = keys.to(q.dtype), values.to(q.dtype)
    flat_keys = keys.reshape(batch * kv_heads, -1, head_dim)
    scores = torch.baddbmm(bias.to(q.dtype), q.reshape(batch * kv_heads, queries, head_dim), flat_keys.mT, alpha=scale)
    weights = scores.softmax(-1, dtype=torch.float32).to(values.dtype)
    return torch.bmm(weights, values.reshape(batch * kv_heads, -1, head_dim)).view(batch, kv_heads, queries, head_dim)


def merge_attention(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor) -> torch.Tensor:
    """Attention over the union of two disjoint key sets, in float32, from each set's output and
    log-sum-exp: the softmax weight of set b is sigmoid(lse_b - lse_a)."""
    return torch.lerp(out_a.float(), out_b.float(), torch.sigmoid(lse_b - lse_a).unsqueeze(-1))


def unsupported_reason(model) -> str | None:
    """Why `FastMoEDecoder` cannot run `model` exactly as `transformers` does, or None if it can."""
    if not isinstance(model, MixtralForCausalLM):
        return f"the fast decoder runs MixtralForCausalLM models, got {type(model).__name__}"
    config = model.config
    if config.sliding_window is not None:
        return "the fast decoder does not implement sliding-window attention"
    rope_type = (config.rope_parameters or {}).get("rope_type", "default")
    if rope_type not in ("default", NOPE_ROTARY_TYPE):  # nope: the same rotation with zero frequencies
        return f"the fast decoder implements default rotary positions only, got rope_type={rope_type!r}"
    if config.hidden_act != "silu":
        return f"the fast decoder implements SiLU experts only, got hidden_act={config.hidden_act!r}"
    return None


class FastMoEDecoder:
    """Prefill, single-token decode steps and multi-token `extend` over a `MixtralForCausalLM`'s weights
    with a `KVCache`."""

    def __init__(self, model: PreTrainedModel, options: DecoderOptions = DecoderOptions()):
        reason = unsupported_reason(model)
        if reason is not None or not isinstance(model, MixtralForCausalLM):
            raise ValueError(f"{reason}; sample it through transformers generate instead")
        config = model.config
        self.config = config
        self.num_heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.top_k = config.num_experts_per_tok
        self.eps = config.rms_norm_eps
        inner = model.model
        self.embed = inner.embed_tokens.weight.detach()
        self.final_norm = inner.norm.weight.detach()
        self.lm_head = model.lm_head.weight.detach()
        self.inv_freq = inner.rotary_emb.inv_freq.detach().float()
        self.rope_scaling = float(inner.rotary_emb.attention_scaling)
        self.layers = [
            _LayerWeights(
                input_norm=layer.input_layernorm.weight.detach(),
                qkv=torch.cat(
                    [layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight]
                ).detach(),
                out=layer.self_attn.o_proj.weight.detach(),
                post_norm=layer.post_attention_layernorm.weight.detach(),
                router=layer.mlp.gate.weight.detach(),
                gate_up=layer.mlp.experts.gate_up_proj.detach().transpose(1, 2),
                down=layer.mlp.experts.down_proj.detach().transpose(1, 2),
            )
            for layer in inner.layers
        ]
        self.dtype = self.embed.dtype
        self.device = self.embed.device
        self.kv_dtype = options.kv_cache_dtype or self.dtype
        if options.int8_weights:
            self.lm_head = Int8Linear(self.lm_head)
            self.layers = [_int8_layer(w) for w in self.layers]

    def rows_hold_prompts(self, prompt_width: int) -> bool:
        """Whether prompts of `prompt_width` slots are best copied into each row's cache (`prompts_per_row`)
        rather than attended once per prompt (the cascade): short prompts in float32 on CPU, where one fused
        attention a layer saves the cascade's second attention and merge. Elsewhere it is not measured, and
        the cascade keeps bfloat16 greedy decoding token for token with `generate`."""
        return prompt_width <= ROW_PROMPT_SLOTS and self.device.type == "cpu" and self.dtype == torch.float32

    def allocate_cache(self, batch: int, slots: int) -> KVCache:
        return KVCache.allocate(
            len(self.layers), batch, self.kv_heads, slots, self.head_dim, self.kv_dtype, self.device
        )

    def rotary_table(self, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin for positions [0, positions), computed as Mixtral does, each (P, H + 2*Hkv, D):
        a row per head of the fused q/k/v projection, the value heads' rows the identity (cos 1, sin 0),
        so that a decode step rotates all its heads with one call."""
        freqs = torch.arange(positions, device=self.device).float()[:, None] * self.inv_freq  # (P, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.rope_scaling).to(self.dtype)
        sin = (emb.sin() * self.rope_scaling).to(self.dtype)
        half = sin.shape[-1] // 2
        signed_sin = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)
        rotated, shape = self.num_heads + self.kv_heads, (positions, self.kv_heads, self.head_dim)
        return (
            torch.cat((cos[:, None].expand(-1, rotated, -1), cos.new_ones(shape)), dim=1),
            torch.cat((signed_sin[:, None].expand(-1, rotated, -1), cos.new_zeros(shape)), dim=1),
        )

    def _qkv(self, weights: _LayerWeights, hidden: torch.Tensor) -> torch.Tensor:
        """The fused q/k/v projection of the normed hidden states (..., C), as heads (..., H + 2*Hkv, D)."""
        qkv = linear(rms_norm(hidden, weights.input_norm, self.eps), weights.qkv)
        return qkv.view(*hidden.shape[:-1], self.num_heads + 2 * self.kv_heads, self.head_dim)

    def _feed_forward(self, weights: _LayerWeights, hidden: torch.Tensor) -> torch.Tensor:
        normed = rms_norm(hidden, weights.post_norm, self.eps)
        flat = normed.reshape(-1, normed.shape[-1])
        gate_up = weights.gate_up.dequantize() if isinstance(weights.gate_up, Int8Experts) else weights.gate_up
        down = weights.down.dequantize() if isinstance(weights.down, Int8Experts) else weights.down
        return hidden + batched_moe(flat, weights.router, gate_up, down, self.top_k).view_as(hidden)

    @torch.inference_mode()
    def prefill(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        cache: KVCache,
        rotary: tuple[torch.Tensor, torch.Tensor],
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run left-padded prompts (B, T) into cache slots [0, T); return the last position's logits (B, V).

        `rotary` is `rotary_table(n)` for at least every position id used. `position_ids` (B, T) number the
        tokens for schemes that do not count them (coupled positions); by default they are counted.
        """
        batch, steps = input_ids.shape
        heads, kv_heads = self.num_heads, self.kv_heads
        real = attention_mask.bool()
        if position_ids is None:
            position_ids = (real.long().cumsum(-1) - 1).clamp(min=0)  # as `generate` numbers left-padded rows
        positions = position_ids
        # The first head's row of the table: queries and keys share it (B, T, 1, D).
        cos, signed_sin = rotary[0][:, 0][positions].unsqueeze(2), rotary[1][:, 0][positions].unsqueeze(2)
        cache.valid[:, :steps] = real
        causal = torch.ones(steps, steps, dtype=torch.bool, device=self.device).tril()
        # Padding rows may still attend to themselves so that no softmax row is empty (NaN).
        mask = (causal & real[:, None, :]) | torch.eye(steps, dtype=torch.bool, device=self.device)
        mask = mask.unsqueeze(1)  # (B, 1, T, T)
        groups = heads // kv_heads
        hidden = F.embedding(input_ids, self.embed)  # (B, T, C)
        for index, weights in enumerate(self.layers):
            qkv = self._qkv(weights, hidden)  # (B, T, H + 2*Hkv, D)
            qk = apply_rotary(qkv[:, :, : heads + kv_heads], cos, signed_sin).transpose(1, 2)
            q, k, v = qk[:, :heads], qk[:, heads:], qkv[:, :, heads + kv_heads :].transpose(1, 2)
            cache.keys(index)[:, :, :steps] = k  # (B, Hkv, T, D)
            cache.values(index)[:, :, :steps] = v
            attended = F.scaled_dot_product_attention(
                q, k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1), attn_mask=mask
            )  # (B, H, T, D)
            hidden = hidden + linear(attended.transpose(1, 2).reshape(batch, steps, -1), weights.out)
            hidden = self._feed_forward(weights, hidden)
        last = rms_norm(hidden[:, -1], self.final_norm, self.eps)
        return linear(last, self.lm_head)  # (B, V)

    @torch.inference_mode()
    def step(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        prompt_segments: list[PromptSegment],
        groups: PromptGroups,
        cache: KVCache,
        slot: int,
        rotary: tuple[torch.Tensor, torch.Tensor],
        prompt_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode one token per row: tokens/positions (B,); logits (B, V).

        Attention is split, as in shared-prefix ("cascade") attention: the prompt part is read once
        per prompt from its `prompt_segments` cache for all rows sampling that prompt (`groups`), the generated
        part per row from `cache` (this token written at `slot`), and the two merge through their
        log-sum-exps. n samples of one prompt thus never copy or re-read its keys n times.

        With no `prompt_segments`, each row's left-padded prompt is in its own `cache` before its generated
        tokens (`KVCache.prompts_per_row`), and `prompt_bias` (B, S) is -inf at its padding: one
        attention a layer and no merge, which is cheaper for short prompts (see `ROW_PROMPT_SLOTS`).
        """
        batch = tokens.shape[0]
        heads, kv_heads, head_dim = self.num_heads, self.kv_heads, self.head_dim
        cos, signed_sin = rotary[0][positions], rotary[1][positions]  # (B, H + 2*Hkv, D)
        prompts, width = groups.index.shape
        groups_per_kv = heads // kv_heads
        scale = head_dim**-0.5
        # Padding places of the layout read row 0: their results are never gathered back, so any
        # finite query will do, and no zero row has to be appended to q in every layer.
        gather = None if groups.aligned else groups.index.clamp(max=batch - 1)
        row_bias = None
        if not prompt_segments:
            if prompt_bias is None:
                raise ValueError("a step over prompts held in the rows' own cache needs their prompt_bias")
            # (B*Hkv, 1, S): one row of bias per (row, head), broadcast over the head's G queries.
            row_bias = prompt_bias[:, None, : slot + 1].expand(-1, kv_heads, -1).reshape(batch * kv_heads, 1, -1)
        hidden = F.embedding(tokens, self.embed)  # (B, C)
        for index, weights in enumerate(self.layers):
            qkv = apply_rotary(self._qkv(weights, hidden), cos, signed_sin)  # q, k rotated; v as it was
            # This token's keys and values, one copy.
            cache.kv[index, :, :, :, slot] = qkv[:, heads:].view(batch, 2, kv_heads, head_dim).transpose(0, 1)
            q = qkv[:, :heads].view(batch, kv_heads, groups_per_kv, head_dim)  # (B, Hkv, G, D)
            if row_bias is not None:
                keys, values = cache.keys(index)[:, :, : slot + 1], cache.values(index)[:, :, : slot + 1]
                attended = attend_rows(q, keys, values, row_bias, scale)
                hidden = hidden + linear(attended.to(self.dtype).reshape(batch, -1), weights.out)
                hidden = self._feed_forward(weights, hidden)
                continue
            # Prompt part: the rows of one prompt stacked as that prompt's queries.
            # (P, R, Hkv, G, D): a view when the batch is already laid out by prompt, else a gather.
            stacked = q.view(prompts, width, *q.shape[1:]) if groups.aligned else q[gather]
            stacked = stacked.transpose(1, 2).reshape(prompts, kv_heads, width * groups_per_kv, head_dim)
            # Padding slots of left-padded prompts get -inf; every prompt has at least one real slot.
            parts = [
                attend(stacked[seg.start : seg.stop], seg.cache.keys(index), seg.cache.values(index), seg.bias, scale)
                for seg in prompt_segments
            ]
            out_p, lse_p = parts[0] if len(parts) == 1 else (torch.cat(t) for t in zip(*parts))
            out_p = out_p.view(prompts, kv_heads, width, groups_per_kv, head_dim).transpose(1, 2)
            lse_p = lse_p.view(prompts, kv_heads, width, groups_per_kv).transpose(1, 2)
            out_p = out_p.reshape(prompts * width, kv_heads, groups_per_kv, head_dim)  # (P*R, Hkv, G, D)
            lse_p = lse_p.reshape(prompts * width, kv_heads, groups_per_kv)
            if not groups.aligned:
                out_p, lse_p = out_p[groups.position], lse_p[groups.position]  # (B, Hkv, G, ·)
            # Generated part: each row's own tokens so far, this one included (no padding).
            keys, values = cache.keys(index)[:, :, : slot + 1], cache.values(index)[:, :, : slot + 1]
            out_g, lse_g = attend(q, keys, values, None, scale)
            attended = merge_attention(out_p, lse_p, out_g, lse_g)
            hidden = hidden + linear(attended.to(self.dtype).reshape(batch, -1), weights.out)
            hidden = self._feed_forward(weights, hidden)
        return linear(rms_norm(hidden, self.final_norm, self.eps), self.lm_head)

    def plan_extend(
        self,
        positions: torch.Tensor,
        slots: torch.Tensor,
        width_q: int,
        cache: KVCache,
        first_slot: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> ExtendPlan:
        """What `extend` needs besides the tokens for rows starting at `positions`/`slots` (B,) with `width_q`
        tokens each: built once, it serves every call with those places (a drafter's k single-token calls
        of one round take `plan.window(...)` views of one plan). `first_slot` (B,): the first slot each row
        reads, for rows whose left-padded prompt sits in their own cache (see `extend`); by default slot 0.
        With the `rotary` table the plan also holds each token's rotation and, for rows holding their prompt,
        the per-head attention bias: gathered once for all the calls its windows serve, not once a call."""
        heads, kv_heads = self.num_heads, self.kv_heads
        groups_per_kv = heads // kv_heads
        offsets = torch.arange(width_q, device=self.device)
        token_slots = slots[:, None] + offsets  # (B, Q)
        places = positions[:, None] + offsets
        used = int(slots.max()) + width_q  # the generated slots any row reads
        # Generated part: query (b, j) reads slot s iff s <= slots[b] + j; queries laid out j-major, g-minor.
        slot_ids = torch.arange(used, device=self.device)[None, None, :]
        seen = slot_ids <= token_slots[:, :, None]  # (B, Q, S)
        if first_slot is not None:
            seen &= slot_ids >= first_slot[:, None, None]
        generated_bias = torch.zeros(seen.shape, dtype=self.dtype, device=self.device)
        generated_bias = generated_bias.masked_fill_(~seen, float("-inf")).repeat_interleave(groups_per_kv, dim=1)
        # Where each row's new keys and values go, as rows of a layer's cache viewed (2 * B * Hkv * S, D): one
        # index_copy_ a layer (advanced-index assignment through a transposed view costs several times more).
        batch, cache_slots = slots.shape[0], cache.kv.shape[4]
        arange = functools.partial(torch.arange, device=self.device)
        head_rows = (arange(2)[:, None, None] * batch + arange(batch)[:, None]) * kv_heads + arange(kv_heads)
        write_at = head_rows[..., None] * cache_slots + token_slots[None, :, None, :]  # (2, B, Hkv, Q)
        generated_bias = generated_bias.unsqueeze(1)
        rotation = None if rotary is None else (rotary[0][places], rotary[1][places])  # (B, Q, H + 2*Hkv, D) each
        # Rows holding their prompt attend once a layer, with the bias of each (row, head): (B*Hkv, Q*G, S).
        row_bias = None if rotary is None or first_slot is None else _bias_per_head(generated_bias, kv_heads)
        return ExtendPlan(places, generated_bias, write_at, used, groups_per_kv, rotation, row_bias)

    @torch.inference_mode()
    def extend(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None,
        slots: torch.Tensor | None,
        prompt_segments: list[PromptSegment],
        groups: PromptGroups,
        cache: KVCache,
        rotary: tuple[torch.Tensor, torch.Tensor],
        plan: ExtendPlan | None = None,
    ) -> torch.Tensor:
        """Decode Q tokens per row in one forward, each row at its own place: tokens (B, Q); logits (B, Q, V).

        Row b's token j sits at position `positions[b] + j` and in generated-cache slot `slots[b] + j`; it
        attends to its prompt (cascade, as in `step`), to the row's generated slots before `slots[b]`, and to
        its own tokens up to j. Slots from `slots[b] + Q` on are never read, so dropping a row's rejected
        draft tokens is only starting its next call at a lower slot: they are masked, then overwritten.
        `plan` is `plan_extend` of these places, when the caller has it already (then `positions` and `slots`
        are not read). With no `prompt_segments` each row's prompt is in its own cache, before its generated
        slots (prefilled there, its left padding masked by the plan's `first_slot`): one attention a layer and
        no merge, fewer ops a call than the cascade, which pays for a small model whose calls are mostly op
        overhead (a drafter), not for the policy, whose prompt keys the cascade reads once for n rows.
        """
        batch, width_q = tokens.shape
        heads, kv_heads, head_dim = self.num_heads, self.kv_heads, self.head_dim
        groups_per_kv = heads // kv_heads
        prompts, width = groups.index.shape
        scale = head_dim**-0.5
        if plan is None:
            if positions is None or slots is None:
                raise ValueError("extend needs the rows' positions and slots, or a plan of them")
            plan = self.plan_extend(positions, slots, width_q, cache)
        cos, signed_sin = plan.rotation or (rotary[0][plan.positions], rotary[1][plan.positions])
        write_at = plan.write_at.reshape(-1)
        used, generated_bias = plan.used, plan.generated_bias
        gather = None if groups.aligned else groups.index.clamp(max=batch - 1)
        # With the prompts in the rows' cache: the bias of each (row, head), (B*Hkv, Q*G, S).
        row_bias = None
        if not prompt_segments:
            row_bias = plan.row_bias if plan.row_bias is not None else _bias_per_head(generated_bias, kv_heads)
        hidden = F.embedding(tokens, self.embed)  # (B, Q, C)
        for index, weights in enumerate(self.layers):
            qkv = apply_rotary(self._qkv(weights, hidden), cos, signed_sin)  # (B, Q, H + 2*Hkv, D)
            new_kv = qkv[:, :, heads:].view(batch, width_q, 2, kv_heads, head_dim).permute(2, 0, 3, 1, 4)
            cache.kv[index].view(-1, head_dim).index_copy_(0, write_at, new_kv.reshape(-1, head_dim).to(cache.kv.dtype))
            q = qkv[:, :, :heads].view(batch, width_q, kv_heads, groups_per_kv, head_dim)
            keys, values = cache.keys(index)[:, :, :used], cache.values(index)[:, :, :used]
            q_rows = q.permute(0, 2, 1, 3, 4).reshape(batch, kv_heads, width_q * groups_per_kv, head_dim)
            if row_bias is not None:  # the prompt is in the rows' own cache: one attention is all of it
                out_r = attend_rows(q_rows, keys, values, row_bias, scale)
                out_r = out_r.view(batch, kv_heads, width_q, groups_per_kv, head_dim).transpose(1, 2)
                hidden = hidden + linear(out_r.to(self.dtype).reshape(batch, width_q, -1), weights.out)
                hidden = self._feed_forward(weights, hidden)
                continue
            out_g, lse_g = attend(q_rows, keys, values, generated_bias, scale)
            out_g = out_g.view(batch, kv_heads, width_q, groups_per_kv, head_dim).transpose(1, 2)
            lse_g = lse_g.view(batch, kv_heads, width_q, groups_per_kv).transpose(1, 2)
            # Prompt part: every query of a prompt's rows at once, (P, Hkv, R*Q*G, D).
            stacked = q.view(prompts, width, *q.shape[1:]) if groups.aligned else q[gather]
            stacked = stacked.permute(0, 3, 1, 2, 4, 5).reshape(prompts, kv_heads, -1, head_dim)
            parts = [
                _attend_prompt(
                    stacked[seg.start : seg.stop], seg.cache.keys(index), seg.cache.values(index), seg.bias, scale
                )
                for seg in prompt_segments
            ]
            out_p, lse_p = parts[0] if len(parts) == 1 else (torch.cat(t) for t in zip(*parts))
            out_p = out_p.view(prompts, kv_heads, width, width_q, groups_per_kv, head_dim).permute(0, 2, 3, 1, 4, 5)
            lse_p = lse_p.view(prompts, kv_heads, width, width_q, groups_per_kv).permute(0, 2, 3, 1, 4)
            out_p = out_p.reshape(prompts * width, width_q, kv_heads, groups_per_kv, head_dim)
            lse_p = lse_p.reshape(prompts * width, width_q, kv_heads, groups_per_kv)
            if not groups.aligned:
                out_p, lse_p = out_p[groups.position], lse_p[groups.position]  # (B, Q, Hkv, G, ·)
            attended = merge_attention(out_p, lse_p, out_g, lse_g)  # (B, Q, Hkv, G, D)
            hidden = hidden + linear(attended.to(self.dtype).reshape(batch, width_q, -1), weights.out)
            hidden = self._feed_forward(weights, hidden)
        return linear(rms_norm(hidden, self.final_norm, self.eps), self.lm_head)


def _bias_per_head(generated_bias: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """A plan's generated-part bias (B, 1, Q*G, S) for each (row, head) of one batched attention: (B*Hkv, Q*G, S)."""
    return generated_bias.expand(-1, kv_heads, -1, -1).flatten(0, 1)


@dataclass(frozen=True)
class ExtendPlan:
    """The places of one `extend` call's tokens: positions (B, Q), the generated part's attention bias
    (B, 1, Q*G, S) over slots [0, used), and the flat cache rows (2, B, Hkv, Q) their keys and values go to;
    when planned with the rotary table, also the tokens' rotation (cos, signed sin, each (B, Q, H + 2*Hkv, D))
    and, for rows holding their prompt, the bias per (row, head) (B*Hkv, Q*G, S)."""

    positions: torch.Tensor
    generated_bias: torch.Tensor
    write_at: torch.Tensor
    used: int
    groups_per_kv: int
    rotation: tuple[torch.Tensor, torch.Tensor] | None = None
    row_bias: torch.Tensor | None = None

    def window(self, first: int, count: int = 1) -> ExtendPlan:
        """The plan of tokens [first, first + count) of this plan's rows (views, no copies): what a drafter's
        calls of one round read, its catch-up first, then one token a call. Later slots stay masked, so
        `used` is kept."""
        g, stop = self.groups_per_kv, first + count
        rotation = None if self.rotation is None else (self.rotation[0][:, first:stop], self.rotation[1][:, first:stop])
        return ExtendPlan(
            self.positions[:, first:stop],
            self.generated_bias[:, :, first * g : stop * g],
            self.write_at[..., first:stop],
            self.used,
            g,
            rotation,
            None if self.row_bias is None else self.row_bias[:, first * g : stop * g],
        )


# Prompts up to this many slots are copied into each row's cache rather than attended once per prompt (the
# cascade): for 11-token prompts a policy step then costs 0.83 of a cascade step, a 5-token verify 0.87 of one
# (2-core CPU, 64 rows, tiny preset); the cascade pays where n rows would each re-read a long prompt.
ROW_PROMPT_SLOTS = 32

# Below this many prompt slots the plain-ops attention beats the fused kernel (measured on 2-core CPUs: many
# stacked queries over a short prompt, as speculative rounds have, run about twice as fast).
SHORT_PROMPT_SLOTS = 32


def _attend_prompt(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`attend` for the prompt part of `extend`: the plain-ops form over short prompts, the fused kernel else."""
    if keys.shape[-2] <= SHORT_PROMPT_SLOTS and q.dtype == keys.dtype:
        return attend_reference(q, keys, values, bias, scale)
    return attend(q, keys, values, bias, scale)
