"""The policy network: a Mixtral-style sparse Mixture-of-Experts causal LM, in named size presets.

Built on `transformers.MixtralForCausalLM` so checkpoints are plain Hugging Face folders that
`AutoModelForCausalLM.from_pretrained` (and GPU inference servers) load. Mixtral ships the
load-balancing loss but no router z-loss, so both MoE auxiliary losses are computed here from the
router logits, with their coefficients stored in the config (`router_aux_loss_coef`,
`router_z_loss_coef`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import cast

import torch
from transformers import MixtralConfig, MixtralForCausalLM, PreTrainedModel
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

from verifarm.policy.tokenizer import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class ModelPreset:
    """Shape of one named model size; every preset is 8 experts, top-2, rotary positions."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int  # per expert
    num_experts: int = 8
    experts_per_token: int = 2
    router_aux_loss_coef: float = 0.01
    router_z_loss_coef: float = 0.001
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}")
        if not 1 <= self.experts_per_token <= self.num_experts:
            raise ValueError(f"experts_per_token must be in [1, {self.num_experts}], got {self.experts_per_token}")


PRESETS: dict[str, ModelPreset] = {
    # CPU sizes: tiny trains 3-digit addition in minutes on 2 cores; small/base for CPU experiments.
    "tiny": ModelPreset(hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=128),
    "small": ModelPreset(hidden_size=256, num_layers=6, num_heads=8, num_kv_heads=4, intermediate_size=512),
    "base": ModelPreset(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=4, intermediate_size=1024),
    # GPU sizes.
    "large": ModelPreset(hidden_size=1024, num_layers=16, num_heads=16, num_kv_heads=8, intermediate_size=2048),
    "xl": ModelPreset(hidden_size=2048, num_layers=24, num_heads=16, num_kv_heads=8, intermediate_size=4096),
}


def model_config(preset: str, vocab_size: int) -> MixtralConfig:
    """The `MixtralConfig` of a named preset for a tokenizer of `vocab_size` (ids from `policy.tokenizer`)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    if vocab_size <= max(PAD_ID, BOS_ID, EOS_ID):
        raise ValueError(f"vocab_size must exceed the special token ids, got {vocab_size}")
    shape = PRESETS[preset]
    return MixtralConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        num_local_experts=shape.num_experts,
        num_experts_per_tok=shape.experts_per_token,
        router_aux_loss_coef=shape.router_aux_loss_coef,
        # Not in MixtralConfig's signature, but kept like every extra key (saved in config.json, read by our loss).
        router_z_loss_coef=shape.router_z_loss_coef,  # type: ignore[call-arg]
        max_position_embeddings=shape.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=False,
    )


def build_model(preset: str, vocab_size: int, seed: int = 0) -> MixtralForCausalLM:
    """A freshly initialised MoE causal LM of the named preset; `seed` makes the init reproducible."""
    config = model_config(preset, vocab_size)
    # Seed a forked RNG so building a model neither depends on nor disturbs the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MixtralForCausalLM(config)
    return model


def drafter_config(policy_config: MixtralConfig, num_layers: int = 1) -> MixtralConfig:
    """A small dense model for speculative sampling beside a policy of `policy_config`: the same tokenizer,
    width and heads, `num_layers` layers, one expert per layer (a Mixtral block with one expert and top-1
    routing is a plain SwiGLU feed-forward), so the fast decoder runs it as it runs the policy."""
    if not 1 <= num_layers <= policy_config.num_hidden_layers:
        raise ValueError(f"a drafter has 1..{policy_config.num_hidden_layers} layers (the policy's), got {num_layers}")
    settings = policy_config.to_dict()
    settings.update(
        num_hidden_layers=num_layers,
        num_local_experts=1,
        num_experts_per_tok=1,
        router_aux_loss_coef=0.0,
        router_z_loss_coef=0.0,
        output_router_logits=False,
    )
    return MixtralConfig(**settings)


def build_drafter(policy: MixtralForCausalLM, num_layers: int = 1, seed: int = 0) -> MixtralForCausalLM:
    """A fresh drafter for `policy` (see `drafter_config`) that starts from the policy's embeddings, output
    head and first layers' attention, so distillation only has to fit what the dropped layers did."""
    config = drafter_config(policy.config, num_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        drafter = MixtralForCausalLM(config)
    with torch.no_grad():
        drafter.model.embed_tokens.weight.copy_(policy.model.embed_tokens.weight)
        drafter.lm_head.weight.copy_(policy.lm_head.weight)
        drafter.model.norm.weight.copy_(policy.model.norm.weight)
        for mine, theirs in zip(drafter.model.layers, policy.model.layers):
            mine.self_attn.load_state_dict(theirs.self_attn.state_dict())
            mine.input_layernorm.load_state_dict(theirs.input_layernorm.state_dict())
            mine.post_attention_layernorm.load_state_dict(theirs.post_attention_layernorm.state_dict())
    # transformers wraps Module.to in functools.wraps, whose type loses the binding to self
    return drafter.to(dtype=policy.dtype, device=policy.device).eval()  # type: ignore[call-arg]


def count_parameters(model: PreTrainedModel) -> dict[str, int]:
    """Total parameters and those active per token (attention, router, embeddings + top-k of E experts)."""
    config = model.config
    total = sum(p.numel() for p in model.parameters())
    expert = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
    active = total - expert + expert * config.num_experts_per_tok // config.num_local_experts
    return {"total": total, "active": active}


def _flat_token_mask(attention_mask: torch.Tensor | None, rows: int, device: torch.device) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(rows, dtype=torch.bool, device=device)
    return attention_mask.reshape(-1).to(device=device, dtype=torch.bool)


def router_z_loss(router_logits: tuple[torch.Tensor, ...], attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """ST-MoE router z-loss: mean over real tokens and layers of logsumexp(router logits)^2.

    It keeps router logits small so the softmax stays numerically tame; `router_logits` is the
    per-layer tuple of (B*T, E) tensors a Mixtral forward returns with `output_router_logits=True`.
    """
    if not router_logits:
        raise ValueError("router_logits is empty: call the model with output_router_logits=True")
    per_layer = []
    for layer_logits in router_logits:
        keep = _flat_token_mask(attention_mask, layer_logits.shape[0], layer_logits.device)
        log_z = torch.logsumexp(layer_logits.float()[keep], dim=-1)
        per_layer.append((log_z**2).mean())
    return torch.stack(per_layer).mean()


def load_balancing_loss(
    router_logits: tuple[torch.Tensor, ...],
    num_experts: int,
    experts_per_token: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Switch-Transformer load-balancing loss (1.0 when perfectly balanced), as Mixtral computes it."""
    if not router_logits:
        raise ValueError("router_logits is empty: call the model with output_router_logits=True")
    # transformers types gate_logits as a 1-tuple (it takes one tensor per layer), and returns the int 0 only when
    # there are no logits, which is refused above.
    loss = load_balancing_loss_func(
        tuple(router_logits),  # type: ignore[arg-type]
        num_experts,
        experts_per_token,
        attention_mask,
    )
    return cast(torch.Tensor, loss)


def moe_aux_losses(
    model: PreTrainedModel, router_logits: tuple[torch.Tensor, ...], attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum of both MoE auxiliary losses to add to a training loss, and its parts as metrics."""
    config = model.config
    balance = load_balancing_loss(router_logits, config.num_local_experts, config.num_experts_per_tok, attention_mask)
    z_loss = router_z_loss(router_logits, attention_mask)
    z_coef = getattr(config, "router_z_loss_coef", 0.0)
    total = config.router_aux_loss_coef * balance + z_coef * z_loss
    metrics = {
        "moe_balance_loss": float(balance.detach()),
        "moe_z_loss": float(z_loss.detach()),
        "moe_aux_total": float(total.detach()),
    }
    return total, metrics


@dataclass
class ExpertLoadReport:
    """How tokens were spread over experts in one forward pass.

    `load[layer][expert]` is the share of routed (token, slot) assignments that went to that expert
    (each row sums to 1; 1/E is perfect balance). Mixtral routing is dropless, so `dropped_share` is
    the share of assignments that *would* overflow a capacity of `capacity_factor * tokens*k/E` per
    expert: the cost of serving this routing with a capacity-limited expert-parallel kernel.
    """

    load: list[list[float]]
    mean_load: list[float]
    max_over_mean: float  # worst expert's load relative to perfect balance, over all layers
    dropped_share: float
    capacity_factor: float
    tokens: int
    balance_loss: float
    z_loss: float

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def expert_load_report(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    capacity_factor: float = 1.25,
) -> ExpertLoadReport:
    """Run `model` on `input_ids` (B, T) and report per-expert load and the dropped-token share."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, time), got shape {tuple(input_ids.shape)}")
    if capacity_factor <= 0:
        raise ValueError(f"capacity_factor must be positive, got {capacity_factor}")
    config = model.config
    experts, top_k = config.num_local_experts, config.num_experts_per_tok
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, output_router_logits=True, use_cache=False)
    router_logits = outputs.router_logits
    load, dropped, assigned = [], 0, 0
    for layer_logits in router_logits:
        keep = _flat_token_mask(attention_mask, layer_logits.shape[0], layer_logits.device)
        chosen = torch.topk(layer_logits.float()[keep], top_k, dim=-1).indices  # (N, k)
        counts = torch.bincount(chosen.reshape(-1), minlength=experts).float()  # (E,)
        capacity = int(capacity_factor * chosen.numel() / experts)
        dropped += int((counts - capacity).clamp(min=0).sum())
        assigned += chosen.numel()
        load.append((counts / counts.sum()).tolist())
    loads = torch.tensor(load)  # (L, E)
    balance = load_balancing_loss(router_logits, experts, top_k, attention_mask)
    return ExpertLoadReport(
        load=load,
        mean_load=loads.mean(dim=0).tolist(),
        max_over_mean=float(loads.max() * experts),
        dropped_share=dropped / max(assigned, 1),
        capacity_factor=capacity_factor,
        tokens=assigned // top_k // max(len(router_logits), 1),
        balance_loss=float(balance),
        z_loss=float(router_z_loss(router_logits, attention_mask)),
    )
