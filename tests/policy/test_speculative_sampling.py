"""Speculative sampling in LocalPolicy: the multi-token decoder step, greedy equality, exact frequencies."""

import pytest
import torch
from scipy.stats import chisquare

from verifarm.policy.fast_decode import FastMoEDecoder, PromptGroups, split_prompt_cache
from verifarm.policy.model import build_drafter, build_model
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.speculative import sampling_distribution

PROMPTS = [
    "1+2=?\n",
    "345+678=?\n",
    "def add(a, b):\n    return",
    "Z",
    "# " + "a long comment line to pad the prompt " * 3 + "\ndef f(x):\n",
]


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model("tiny", len(tokenizer), seed=0).eval()


@pytest.fixture(scope="module")
def drafter(model):
    """An undistilled drafter: it shares the policy's embeddings, so it agrees with it now and then."""
    return build_drafter(model, num_layers=1, seed=1)


def forward_logits(model, tokenizer, prompt: str, continuation: list[int]) -> torch.Tensor:
    ids = torch.tensor([tokenizer(prompt)["input_ids"] + continuation])
    with torch.no_grad():
        return model(input_ids=ids).logits[0, -len(continuation) :]


@pytest.mark.parametrize("rows_hold_prompts", [False, True], ids=["cascade", "prompt-in-row"])
@pytest.mark.parametrize("one_token_windows", [False, True], ids=["one-call", "windows-of-one-plan"])
def test_extend_matches_a_full_forward_and_rolls_back_by_slot(model, tokenizer, rows_hold_prompts, one_token_windows):
    """Rows at different slots; a row rewritten from an earlier slot forgets the tokens it replaced. The prompt
    is attended once per prompt (the cascade) or sits in each row's own cache before its generated slots. The
    continuation runs as one call, or token by token through windows of one plan that holds the rotation (as a
    drafter's calls of a round run)."""
    decoder = FastMoEDecoder(model)
    prompts = PROMPTS[:3]
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(map(len, ids))
    input_ids = torch.tensor([[0] * (width - len(x)) + x for x in ids])
    mask = (torch.arange(width)[None] >= torch.tensor([width - len(x) for x in ids])[:, None]).long()
    prompt_cache, rotary = decoder.allocate_cache(3, width), decoder.rotary_table(width + 16)
    decoder.prefill(input_ids, mask, prompt_cache, rotary)
    segments = split_prompt_cache(prompt_cache, [len(x) for x in ids])
    groups = PromptGroups.from_prompt_of([0, 1, 2], 3, torch.device("cpu"))
    lengths = torch.tensor([len(x) for x in ids])
    if rows_hold_prompts:
        cache, segments, offset = prompt_cache.prompts_per_row(torch.arange(3), 16), [], width
    else:
        cache, offset = decoder.allocate_cache(3, 16), 0

    def extend(tokens: torch.Tensor, generated: torch.Tensor, windows: bool = False) -> torch.Tensor:
        first_slot = width - lengths if rows_hold_prompts else None  # the left padding stays unseen
        places = (lengths + generated, offset + generated, tokens.shape[1], cache, first_slot)
        if not windows:
            return decoder.extend(
                tokens, None, None, segments, groups, cache, rotary, plan=decoder.plan_extend(*places)
            )
        plan = decoder.plan_extend(*places, rotary=rotary)
        calls = [
            decoder.extend(tokens[:, [j]], None, None, segments, groups, cache, rotary, plan=plan.window(j))
            for j in range(tokens.shape[1])
        ]
        return torch.cat(calls, dim=1)

    first = torch.tensor([[40, 41, 42, 43], [50, 51, 52, 53], [60, 61, 62, 63]])
    extend(first, torch.zeros(3, dtype=torch.long))
    # Keep 1, 3 and 0 tokens of each row and continue from there with new tokens.
    kept = torch.tensor([1, 3, 0])
    second = torch.tensor([[70, 71], [72, 73], [74, 75]])
    logits = extend(second, kept, windows=one_token_windows)
    for row in range(3):
        continuation = first[row, : kept[row]].tolist() + second[row].tolist()
        expected = forward_logits(model, tokenizer, prompts[row], continuation)[-2:]
        torch.testing.assert_close(logits[row], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "draft_tokens,prompts",
    [(1, PROMPTS), (4, PROMPTS), (4, PROMPTS[:4])],
    ids=["k1-cascade", "k4-cascade", "k4-prompt-in-row"],  # a long prompt makes the policy take the cascade
)
def test_greedy_speculative_output_is_the_policys_greedy_output(model, drafter, tokenizer, draft_tokens, prompts):
    assert FastMoEDecoder(model).rows_hold_prompts(max(len(tokenizer(p)["input_ids"]) for p in prompts)) == (
        len(prompts) == 4
    )
    plain = LocalPolicy(model, tokenizer, 0).sample(prompts * 2, n=2, temperature=0, max_new_tokens=40)
    spec = LocalPolicy(model, tokenizer, 0, drafter=drafter, draft_tokens=draft_tokens)
    drafted = spec.sample(prompts * 2, n=2, temperature=0, max_new_tokens=40)
    for plain_row, drafted_row in zip(plain, drafted):
        for ours, theirs in zip(drafted_row, plain_row):
            assert ours.token_ids == theirs.token_ids and ours.finish_reason == theirs.finish_reason
            torch.testing.assert_close(torch.tensor(ours.logprobs), torch.tensor(theirs.logprobs), atol=1e-4, rtol=0)
            assert ours.drafted and ours.draft_proposed > 0
    kept = [c.draft_accepted for row in drafted for c in row]
    assert 0 < sum(kept) < sum(c.draft_proposed for row in drafted for c in row)


def test_rows_ending_mid_round_at_eos_and_stop_strings_match_plain_sampling(tokenizer):
    model = build_model("tiny", len(tokenizer), seed=0).eval()
    free = LocalPolicy(model, tokenizer, 0).sample(PROMPTS, n=1, temperature=0, max_new_tokens=24)
    with torch.no_grad():  # eos wins wherever the first row's 4th greedy token would: rows end at different steps
        model.lm_head.weight[tokenizer.eos_token_id] = model.lm_head.weight[free[0][0].token_ids[3]] * 1.05
    stop = ["a)", "never-seen"]
    plain = LocalPolicy(model, tokenizer, 0).sample(PROMPTS * 2, n=2, temperature=0, max_new_tokens=22, stop=stop)
    spec = LocalPolicy(model, tokenizer, 0, drafter=model, draft_tokens=3)  # the policy drafting for itself
    drafted = spec.sample(PROMPTS * 2, n=2, temperature=0, max_new_tokens=22, stop=stop)
    lengths = set()
    for plain_row, drafted_row in zip(plain, drafted):
        for ours, theirs in zip(drafted_row, plain_row):
            assert (ours.token_ids, ours.text, ours.finish_reason) == (
                theirs.token_ids,
                theirs.text,
                theirs.finish_reason,
            )
            assert ours.draft_accepted == ours.draft_proposed  # a perfect drafter is always kept
            # Drafts past a row's end count neither as proposed nor kept: after its first token a row emits rounds
            # of 3 drafts and a bonus token, then up to its end in the last round (no bonus if it ends on a draft).
            full_rounds, last = divmod(len(ours.token_ids) - 1, 3 + 1)
            assert ours.draft_proposed == 3 * full_rounds + min(3, last)
            lengths.add(len(ours.token_ids))
    assert len(lengths) > 1 and min(lengths) <= 4


def sharpened(model, factor: float):
    """A copy whose next-token distributions are peaked, so a few thousand samples fill the cells."""
    sharp = type(model)(model.config).eval()
    sharp.load_state_dict(model.state_dict())
    with torch.no_grad():
        sharp.lm_head.weight.mul_(factor)
    return sharp


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.8, 0.9)])
def test_token_frequencies_match_the_policys_distribution(tokenizer, temperature, top_p):
    """Chi-square over the first two generated tokens: the second comes from the first verified round."""
    policy_model = sharpened(build_model("tiny", len(tokenizer), seed=3).eval(), 15.0)
    drafter = sharpened(build_drafter(policy_model, num_layers=1, seed=4), 1.0)
    prompt, rows = "7+8=?\n", 4000
    policy = LocalPolicy(policy_model, tokenizer, 0, drafter=drafter, draft_tokens=2)
    samples = policy.sample([prompt], n=rows, temperature=temperature, top_p=top_p, max_new_tokens=3, seed=5)[0]
    pairs = torch.tensor([c.token_ids[:2] for c in samples if len(c.token_ids) >= 2])
    assert len(pairs) == rows  # tiny random models essentially never emit eos first

    vocab = policy_model.config.vocab_size
    with torch.no_grad():
        ids = torch.tensor(tokenizer(prompt)["input_ids"])
        first_logits = policy_model(input_ids=ids[None]).logits[0, -1]
        continued = torch.cat((ids.expand(vocab, -1), torch.arange(vocab)[:, None]), dim=1)
        second_logits = policy_model(input_ids=continued).logits[:, -1]
    first = sampling_distribution(first_logits, temperature, top_p)
    second = sampling_distribution(second_logits, temperature, top_p)
    joint = (first / first.sum())[:, None] * second / second.sum(-1, keepdim=True)  # (V, V)
    expected = joint.reshape(-1).double() * rows
    observed = torch.bincount(pairs[:, 0] * vocab + pairs[:, 1], minlength=vocab * vocab).double()
    # Cells expected at least 5 times are tested one by one; the rest are pooled into one cell.
    big = expected >= 5
    assert big.sum() >= 20 and expected[big].sum() > 0.6 * rows
    observed = torch.cat((observed[big], observed[~big].sum()[None]))
    expected = torch.cat((expected[big], expected[~big].sum()[None]))
    assert chisquare(observed.numpy(), (expected / expected.sum() * observed.sum()).numpy()).pvalue > 1e-3
    assert sum(c.draft_accepted for c in samples) > 0


def test_a_drafter_of_another_vocabulary_is_refused(model, tokenizer):
    other = build_drafter(build_model("tiny", len(tokenizer) + 5))
    with pytest.raises(ValueError, match="vocabulary"):
        LocalPolicy(model, tokenizer, 0, drafter=other)
    with pytest.raises(ValueError, match="draft_tokens"):
        LocalPolicy(model, tokenizer, 0, drafter=build_drafter(model), draft_tokens=0)


def test_a_one_expert_drafter_runs_in_the_fast_decoder_as_transformers_runs_it(model, tokenizer):
    """One expert takes the dense shortcut of `batched_moe` (no routing): still the very same model."""
    drafter = build_drafter(model, num_layers=2, seed=5)
    with torch.no_grad():
        drafter.model.layers[0].mlp.experts.gate_up_proj.normal_(0, 0.3)  # make the feed-forward matter
    ours = LocalPolicy(drafter, tokenizer, 0).sample(PROMPTS, n=1, temperature=0, max_new_tokens=12)
    for prompt, row in zip(PROMPTS, ours):
        logits = forward_logits(drafter, tokenizer, prompt, row[0].token_ids)
        assert row[0].token_ids[1:] == logits[:-1].argmax(-1).tolist()
