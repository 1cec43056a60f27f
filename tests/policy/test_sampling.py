"""LocalPolicy sampling: greedy parity of the fast decoder with `generate`, log-probs, seeds, stops."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from verifarm.policy import fast_decode
from verifarm.policy.fast_decode import (
    KVCache,
    PromptGroups,
    attend,
    attend_reference,
    batched_moe,
    merge_attention,
    split_prompt_cache,
)
from verifarm.policy.model import build_model
from verifarm.policy.sampling import Completion, LocalPolicy, choose_tokens

PROMPTS = ["1+2=?\n", "345+678=?\n", "def add(a, b):\n    return", "Z"]
# Prompt lengths far apart: short prompts sit beside long ones with much left padding.
MIXED_PROMPTS = PROMPTS + ["# " + "a long comment line to pad the prompt " * 3 + "\ndef f(x):\n", "9+9=?\n" * 12]


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model("tiny", len(tokenizer), seed=0).eval()


def hf_greedy(model, tokenizer, prompts, max_new_tokens):
    """`transformers` generate on a left-padded batch: the reference the fast path must match."""
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    tokenizer.padding_side = "right"
    with torch.no_grad():
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    rows = []
    for ids in out[:, batch["input_ids"].shape[1] :].tolist():
        end = ids.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in ids else len(ids)
        rows.append(ids[:end])
    return rows


def teacher_forced_logprobs(model, tokenizer, prompt, completion_ids):
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
    positions = torch.arange(len(prompt_ids) - 1, ids.shape[1] - 1)
    return logprobs[positions, ids[0, len(prompt_ids) :]]


def test_batched_moe_matches_mixtral_block(model):
    block = model.model.layers[0].mlp
    x = torch.randn(37, model.config.hidden_size)
    with torch.no_grad():
        expected = block(x[None])[0]
        actual = batched_moe(
            x, block.gate.weight, block.experts.gate_up_proj.transpose(1, 2), block.experts.down_proj.transpose(1, 2), 2
        )
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    # float64 takes the padded-bmm path (the one GPUs use); check it against a per-token loop.
    router, gate_up = block.gate.weight.double(), block.experts.gate_up_proj.double()
    down, x = block.experts.down_proj.double(), x.double()
    expected = torch.zeros_like(x)
    for token in range(x.shape[0]):
        weights, chosen = torch.softmax(router @ x[token], dim=-1).topk(2)
        for weight, expert in zip(weights / weights.sum(), chosen):
            gate, up = (gate_up[expert] @ x[token]).chunk(2)
            expected[token] += weight * (down[expert] @ (torch.nn.functional.silu(gate) * up))
    with torch.no_grad():
        actual = batched_moe(x, router, gate_up.transpose(1, 2), down.transpose(1, 2), 2)
    torch.testing.assert_close(actual, expected)


def test_prompt_groups_lay_rows_out_by_prompt():
    groups = PromptGroups.from_prompt_of([0, 0, 1, 2, 2, 2], prompts=3, device=torch.device("cpu"))
    assert groups.index.tolist() == [[0, 1, 6], [2, 6, 6], [3, 4, 5]]  # 6 = the dummy row
    assert groups.position.tolist() == [0, 1, 3, 6, 7, 8]
    with pytest.raises(ValueError, match="prompt indices"):
        PromptGroups.from_prompt_of([0, 3], prompts=3, device=torch.device("cpu"))


def test_split_prompt_cache_trims_short_prompts_padding():
    cache = KVCache.allocate(2, 4, 1, 10, 8, torch.float32, torch.device("cpu"))
    for prompt, length in enumerate([2, 3, 9, 10]):
        cache.valid[prompt, 10 - length :] = True
        cache.kv[:, :, prompt, :, 10 - length :] = prompt + 1
    short, long = split_prompt_cache(cache, [2, 3, 9, 10])
    assert (short.start, short.stop, long.start, long.stop) == (0, 2, 2, 4)
    assert short.cache.kv.shape == (2, 2, 2, 1, 3, 8) and long.cache.kv.shape == (2, 2, 2, 1, 10, 8)  # keys, values
    assert short.cache.keys(0).shape == short.cache.values(0).shape == (2, 1, 3, 8)
    assert short.cache.keys(0)[1, 0, :, 0].tolist() == [2, 2, 2] and short.cache.values(1)[0, 0, 0, 0] == 0
    assert short.bias[:, 0, 0].tolist() == [[float("-inf"), 0, 0], [0, 0, 0]]
    assert len(split_prompt_cache(cache, [8, 9, 9, 10])) == 1  # nearly equal lengths: one run
    with pytest.raises(ValueError, match="one length"):
        split_prompt_cache(cache, [2, 3, 11, 10])


def _attention_inputs(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    q = torch.randn(3, 2, 4, 8, dtype=dtype)
    keys, values = torch.randn(3, 2, 11, 8, dtype=dtype), torch.randn(3, 2, 11, 8, dtype=dtype)
    bias = torch.zeros(3, 1, 1, 11, dtype=dtype)
    bias[0, ..., :5] = float("-inf")  # left padding of a short prompt
    return q, keys, values, bias


def test_fused_cpu_attention_and_the_plain_ops_path_agree():
    """The CPU's fused kernel (float32 decoding) and the plain-ops path (other devices and dtypes) give the
    same output and log-sum-exp."""
    assert fast_decode._CPU_FLASH is not None  # else `attend` would be the reference itself
    q, keys, values, bias = _attention_inputs(torch.float32)
    fused, reference = (
        fast_decode._CPU_FLASH(q, keys, values, attn_mask=bias, scale=0.3),
        attend_reference(q, keys, values, bias, 0.3),
    )
    torch.testing.assert_close(fused[0], reference[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused[1], reference[1], rtol=1e-5, atol=1e-5)
    assert reference[1].dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_two_attention_parts_merge_to_attention_over_their_union(dtype):
    q, keys, values, bias = _attention_inputs(dtype)
    whole = torch.softmax((q.float() @ keys.float().transpose(-1, -2)) * 0.3 + bias.float(), dim=-1) @ values.float()
    first, second = (
        attend(q, keys[:, :, part], values[:, :, part], bias[..., part], 0.3) for part in (slice(0, 7), slice(7, 11))
    )
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(merge_attention(*first, *second).float(), whole, **tolerance)


def test_greedy_matches_generate_with_left_padding(model, tokenizer):
    policy = LocalPolicy(model, tokenizer, version=7)
    lengths = sorted(len(tokenizer(p)["input_ids"]) for p in MIXED_PROMPTS)
    assert lengths[-1] - lengths[0] >= 64
    results = policy.sample(MIXED_PROMPTS, n=2, temperature=0, max_new_tokens=24)
    expected = hf_greedy(model, tokenizer, MIXED_PROMPTS, 24)
    assert [len(r) for r in results] == [2] * len(MIXED_PROMPTS)
    for samples, reference in zip(results, expected):
        for completion in samples:
            assert isinstance(completion, Completion) and completion.policy_version == 7
            assert completion.token_ids == reference
            assert len(completion.logprobs) == len(completion.token_ids)


def test_eos_ends_rows_at_different_steps_and_matches_generate(tokenizer):
    model = build_model("tiny", len(tokenizer), seed=0).eval()
    free_run = LocalPolicy(model, tokenizer, 0).sample(PROMPTS, n=1, temperature=0, max_new_tokens=24)
    # Make eos win wherever the first row's 4th greedy token would: rows then end at different steps.
    trigger = free_run[0][0].token_ids[3]
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] = model.lm_head.weight[trigger] * 1.05
    policy = LocalPolicy(model, tokenizer, 0)
    results = policy.sample(MIXED_PROMPTS * 3, n=2, temperature=0, max_new_tokens=24)
    expected = hf_greedy(model, tokenizer, MIXED_PROMPTS * 3, 24)
    lengths = set()
    for samples, reference in zip(results, expected):
        for completion in samples:
            assert completion.token_ids == reference
            lengths.add(len(completion.token_ids))
            if completion.token_ids[-1] == tokenizer.eos_token_id:
                assert completion.finish_reason == "stop"
                assert completion.text == tokenizer.decode(completion.token_ids[:-1])
    assert len(lengths) > 1 and min(lengths) <= 4


def test_logprobs_are_the_models_own_distribution(model, tokenizer):
    policy = LocalPolicy(model, tokenizer, 0)
    results = policy.sample(MIXED_PROMPTS, n=3, temperature=0.7, top_p=0.9, max_new_tokens=12, seed=5)
    for prompt, samples in zip(MIXED_PROMPTS, results):
        for completion in samples:
            expected = teacher_forced_logprobs(model, tokenizer, prompt, completion.token_ids)
            torch.testing.assert_close(torch.tensor(completion.logprobs), expected, rtol=1e-4, atol=1e-4)


def test_seeds_reproduce_and_top_p_near_zero_is_greedy(model, tokenizer):
    policy = LocalPolicy(model, tokenizer, 0)
    first = policy.sample(PROMPTS, n=4, temperature=1.0, max_new_tokens=16, seed=11)
    again = policy.sample(PROMPTS, n=4, temperature=1.0, max_new_tokens=16, seed=11)
    other = policy.sample(PROMPTS, n=4, temperature=1.0, max_new_tokens=16, seed=12)
    assert first == again and first != other
    assert len({tuple(c.token_ids) for c in first[0]}) > 1  # the n samples of one prompt differ
    greedy = policy.sample(PROMPTS, n=1, temperature=0, max_new_tokens=16)
    nucleus = policy.sample(PROMPTS, n=1, temperature=1.0, top_p=1e-6, max_new_tokens=16, seed=3)
    assert [s[0].token_ids for s in nucleus] == [s[0].token_ids for s in greedy]


def test_choose_tokens_never_picks_outside_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 2000))
    generator = torch.Generator().manual_seed(0)
    tokens, logprobs = choose_tokens(logits, temperature=1.0, top_p=0.7, generator=generator)
    counts = torch.bincount(tokens, minlength=4)
    assert counts[2:].sum() == 0 and counts[0] > counts[1] > 0  # nucleus {0, 1}, renormalised 5:3
    assert abs(counts[0] / 2000 - 0.625) < 0.05
    torch.testing.assert_close(logprobs, logits[0, tokens])
    impossible = torch.tensor([[0.0, 0.0, -float("inf"), -float("inf")]] * 500)
    tokens, _ = choose_tokens(impossible, temperature=1.0, top_p=1.0, generator=generator)
    assert set(tokens.tolist()) == {0, 1}


def test_stop_string_cuts_text_and_ends_the_row(model, tokenizer):
    policy = LocalPolicy(model, tokenizer, 0)
    free = policy.sample(["345+678=?\n"], n=1, temperature=0, max_new_tokens=30)[0][0]
    text = free.text
    stop = next(text[i : i + 2] for i in range(5, len(text) - 2) if "\ufffd" not in text[i : i + 2])
    cut = policy.sample(["345+678=?\n"], n=1, temperature=0, max_new_tokens=30, stop=[stop, "never-seen"])[0][0]
    assert cut.finish_reason == "stop" and free.finish_reason == "length"
    assert cut.text == text[: text.index(stop)]
    assert cut.token_ids == free.token_ids[: len(cut.token_ids)] and len(cut.token_ids) < len(free.token_ids)
    assert stop in tokenizer.decode(cut.token_ids) and stop not in tokenizer.decode(cut.token_ids[:-1])


def test_from_dir_serves_a_saved_checkpoint(tmp_path, model, tokenizer):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = LocalPolicy.from_dir(tmp_path, version=3)
    assert loaded.version == 3
    original = LocalPolicy(model, tokenizer, 3).sample(PROMPTS, n=1, temperature=0, max_new_tokens=10)
    assert loaded.sample(PROMPTS, n=1, temperature=0, max_new_tokens=10) == original
    with pytest.raises(ValueError, match=r"config\.json"):
        LocalPolicy.from_dir(tmp_path / "missing", version=1)


def test_any_other_causal_lm_samples_through_generate(tokenizer):
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    dense = LlamaForCausalLM(config).eval()
    policy = LocalPolicy(dense, tokenizer, 1)
    greedy = policy.sample(PROMPTS, n=2, temperature=0, max_new_tokens=12)
    for samples, reference in zip(greedy, hf_greedy(dense, tokenizer, PROMPTS, 12)):
        assert [c.token_ids for c in samples] == [reference, reference]
    sampled = policy.sample(PROMPTS[:1], n=2, temperature=1.0, max_new_tokens=8, seed=1)
    again = policy.sample(PROMPTS[:1], n=2, temperature=1.0, max_new_tokens=8, seed=1)
    assert sampled == again
    for completion in sampled[0]:
        expected = teacher_forced_logprobs(dense, tokenizer, PROMPTS[0], completion.token_ids)
        torch.testing.assert_close(torch.tensor(completion.logprobs), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(prompts=[]), "non-empty list"),
        (dict(prompts="1+1=?\n"), "non-empty list"),
        (dict(n=0), "n must be"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(stop=[""]), "stop strings"),
    ],
)
def test_invalid_arguments_raise_value_error(model, tokenizer, bad, message):
    arguments = dict(prompts=["1+1=?\n"], n=1, temperature=1.0, top_p=1.0, max_new_tokens=4, stop=None) | bad
    with pytest.raises(ValueError, match=message):
        LocalPolicy(model, tokenizer, 0).sample(**arguments)


def test_sampling_leaves_a_shared_training_model_in_training_mode(tokenizer):
    model = build_model("tiny", len(tokenizer), seed=0).train()
    LocalPolicy(model, tokenizer, 0).sample(PROMPTS[:1], n=2, max_new_tokens=4, seed=0)
    assert model.training


def test_mixtral_variants_the_fast_path_lacks_fall_back_to_generate(tokenizer):
    from transformers import MixtralForCausalLM

    from verifarm.policy.fast_decode import FastMoEDecoder, unsupported_reason
    from verifarm.policy.model import model_config

    config = model_config("tiny", len(tokenizer))
    config.hidden_act = "gelu"
    torch.manual_seed(0)
    model = MixtralForCausalLM(config).eval()
    assert "hidden_act" in unsupported_reason(model)
    with pytest.raises(ValueError, match="generate instead"):
        FastMoEDecoder(model)
    results = LocalPolicy(model, tokenizer, 0).sample(PROMPTS, n=1, temperature=0, max_new_tokens=8)
    assert [r[0].token_ids for r in results] == hf_greedy(model, tokenizer, PROMPTS, 8)


def test_bfloat16_weights_decode_like_generate(tokenizer):
    """The dtype a GPU deployment uses: norms in float32, everything else in bfloat16, as Mixtral does."""
    model = build_model("tiny", len(tokenizer), seed=0).to(torch.bfloat16).eval()
    results = LocalPolicy(model, tokenizer, 0).sample(PROMPTS, n=1, temperature=0, max_new_tokens=16)
    assert [r[0].token_ids for r in results] == hf_greedy(model, tokenizer, PROMPTS, 16)
    assert all(isinstance(lp, float) for lp in results[0][0].logprobs)
