"""int8 weights with per-output-channel scales for the fast decoder: attention output, output head and experts
(the query/key/value projection stays float: `fast_decode._int8_layer` says why).

Dense projections run through PyTorch's int8 matrix product (`torch._int_mm`, int8 x int8 -> int32) with
the activations quantized per token on each call (dynamic W8A8, as torchao's int8 dynamic quantization):
on this kind of CPU about 4x faster than float32 for a (64, 1024) x (1024, 4096) product, about even at
the tiny presets' sizes, where op count rules. PyTorch has no grouped int8 product, so the experts keep
int8 values and scales and are expanded to float for each grouped product (less memory held, no faster).
Symmetric scales everywhere: w ~ scale[c] * q[c, :].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def quantize_int8(weight: torch.Tensor, input_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 values of `weight` and float32 scales (keepdim), one scale per slice along
    `input_dim` (the dimension a product sums over), i.e. per output channel (and per expert)."""
    scales = (weight.detach().abs().amax(dim=input_dim, keepdim=True).float() / 127.0).clamp(min=1e-12)
    return torch.round(weight.detach().float() / scales).clamp(-127, 127).to(torch.int8), scales


class Int8Linear:
    """y = x W^T for W (out, in) kept as int8 with a scale per output row; x is quantized per row on each call."""

    def __init__(self, weight: torch.Tensor):
        if weight.dim() != 2:
            raise ValueError(f"Int8Linear takes a weight (out, in), got shape {tuple(weight.shape)}")
        values, scales = quantize_int8(weight, 1)
        self.values_t = values.T.contiguous()  # (in, out), the layout the product reads
        self.scales = scales.T.contiguous()  # (1, out)
        self.dtype = weight.dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).float()
        row_scales = flat.abs().amax(-1, keepdim=True).clamp_(min=1e-12).div_(127.0)  # (N, 1)
        quantized = flat.div(row_scales).round_().to(torch.int8)
        out = torch._int_mm(quantized, self.values_t).float().mul_(row_scales).mul_(self.scales)
        return out.view(*x.shape[:-1], -1).to(self.dtype)


@dataclass(frozen=True)
class Int8Experts:
    """Stacked expert weights (E, in, out) as int8 with a scale per (expert, output channel)."""

    values: torch.Tensor  # (E, in, out) int8
    scales: torch.Tensor  # (E, 1, out) float32
    dtype: torch.dtype

    @classmethod
    def from_weight(cls, weight: torch.Tensor) -> Int8Experts:
        """`weight` (E, in, out) as the grouped product reads it; scales per expert and output channel."""
        return cls(*quantize_int8(weight, 1), weight.dtype)

    def dequantize(self) -> torch.Tensor:
        return (self.values.to(torch.float32) * self.scales).to(self.dtype)
