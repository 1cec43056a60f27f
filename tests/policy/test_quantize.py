"""Low precision in the fast decoder: int8 weights and a bfloat16 KV cache, within stated tolerances of float32.

Tolerances (the tiny preset, sampled at temperature 1): the log-probability the low-precision sampler
records for each token it draws is within 0.01 of the float32 model's on average and within 0.1 at
worst; int8 products are within 2% of the output's largest entry.
"""

import pytest
import torch

from verifarm.policy.fast_decode import DecoderOptions
from verifarm.policy.model import build_drafter, build_model
from verifarm.policy.quantize import Int8Experts, Int8Linear, quantize_int8
from verifarm.policy.sampling import LocalPolicy

PROMPTS = ["1+2=?\n", "345+678=?\n", "def add(a, b):\n    return", "Z"]


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model("tiny", len(tokenizer), seed=0).eval()


def test_int8_values_round_to_the_nearest_step_of_each_channels_scale():
    weight = torch.randn(8, 32, 48) * torch.linspace(0.01, 3, 48)  # channels of very different size
    values, scales = quantize_int8(weight, 1)
    assert values.dtype == torch.int8 and scales.shape == (8, 1, 48)
    assert ((values.float() * scales - weight).abs() <= scales / 2 + 1e-6).all()
    assert values.abs().amax(dim=1).eq(127).all()  # every channel uses its full range
    experts = Int8Experts.from_weight(weight)
    torch.testing.assert_close(experts.dequantize(), values.float() * scales)


@pytest.mark.parametrize("shape", [(1, 64), (7, 64), (3, 5, 64)])
def test_int8_linear_is_within_two_percent_of_float(shape):
    generator = torch.Generator().manual_seed(0)
    weight, x = torch.randn(259, 64, generator=generator), torch.randn(*shape, generator=generator)
    exact = x @ weight.T
    approx = Int8Linear(weight)(x)
    assert approx.shape == exact.shape and approx.dtype == torch.float32
    assert (approx - exact).abs().max() <= 0.02 * exact.abs().max()
    assert not torch.equal(approx, exact)  # it is really the int8 product


def teacher_forced_logprobs(model, tokenizer, prompt, ids):
    prompt_ids = tokenizer(prompt)["input_ids"]
    sequence = torch.tensor([prompt_ids + ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=sequence).logits.float(), dim=-1)[0]
    return logprobs[torch.arange(len(prompt_ids) - 1, sequence.shape[1] - 1), torch.tensor(ids)]


@pytest.mark.parametrize(
    "options",
    [
        DecoderOptions(int8_weights=True),
        DecoderOptions(kv_cache_dtype=torch.bfloat16),
        DecoderOptions(int8_weights=True, kv_cache_dtype=torch.bfloat16),
    ],
    ids=["int8", "bf16-kv", "both"],
)
def test_low_precision_sampling_records_logprobs_within_tolerance_of_float32(model, tokenizer, options):
    policy = LocalPolicy(model, tokenizer, 0, decoder_options=options)
    for drafter in (None, build_drafter(model)):
        policy.drafter = drafter
        rows = policy.sample(PROMPTS, n=4, temperature=1.0, max_new_tokens=48, seed=0)
        errors = torch.cat(
            [
                (torch.tensor(c.logprobs) - teacher_forced_logprobs(model, tokenizer, prompt, c.token_ids)).abs()
                for prompt, row in zip(PROMPTS, rows)
                for c in row
            ]
        )
        assert errors.mean() <= 0.01 and errors.max() <= 0.1, (errors.mean(), errors.max())
        assert errors.max() > 1e-6  # the low-precision path really ran


def test_bfloat16_cache_holds_half_the_bytes_and_bad_dtypes_are_refused(model):
    from verifarm.policy.fast_decode import FastMoEDecoder

    exact = FastMoEDecoder(model).allocate_cache(4, 32)
    half = FastMoEDecoder(model, DecoderOptions(kv_cache_dtype=torch.bfloat16)).allocate_cache(4, 32)
    assert half.kv.dtype == torch.bfloat16 and half.kv.nbytes * 2 == exact.kv.nbytes
    with pytest.raises(ValueError, match="kv_cache_dtype"):
        DecoderOptions(kv_cache_dtype=torch.int8)


def test_int8_keeps_queries_and_keys_in_float_and_the_rest_in_int8(model):
    # Queries and keys decide which digit a position attends to: their int8 error cost 1.6-2 points of pass@1.
    from verifarm.policy.fast_decode import FastMoEDecoder

    decoder = FastMoEDecoder(model, DecoderOptions(int8_weights=True))
    assert isinstance(decoder.lm_head, Int8Linear)
    for layer in decoder.layers:
        assert isinstance(layer.qkv, torch.Tensor) and layer.qkv.dtype == torch.float32
        assert isinstance(layer.out, Int8Linear)
        assert isinstance(layer.gate_up, Int8Experts) and isinstance(layer.down, Int8Experts)
