"""Training losses on the tiny MoE preset: they decrease, policy gradient moves the right way, routers stay balanced."""

from __future__ import annotations

import copy

import pytest
import torch

from verifarm.policy.losses import (
    distill_loss,
    grpo_loss,
    group_advantages,
    lm_loss,
    sequence_logprobs,
    sft_loss,
)
from verifarm.policy.model import build_model, expert_load_report
from verifarm.policy.training import TrainConfig, encode_batch, encode_texts, make_optimizer

PROMPTS = ["12+34=?\n", "50+7=?\n", "9+9=?\n", "21+13=?\n"]
COMPLETIONS = ["Answer: 46\n", "Answer: 57\n", "Answer: 18\n", "Answer: 34\n"]


@pytest.fixture
def model(tokenizer):
    torch.manual_seed(0)
    return build_model("tiny", vocab_size=len(tokenizer), seed=0)


@pytest.fixture(scope="module")
def batch(tokenizer):
    return encode_batch(tokenizer, PROMPTS, COMPLETIONS)


def _optimizer(model, lr=3e-3):
    return make_optimizer(model, TrainConfig(learning_rate=lr, weight_decay=0.0))


def _train(model, loss_fn, steps=8, lr=3e-3) -> list[float]:
    optimizer = _optimizer(model, lr)
    losses = []
    model.train()
    for _ in range(steps):
        loss, metrics = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_encode_batch_marks_completion_tokens_only(tokenizer, batch):
    row = batch.input_ids[1]
    length = int(batch.attention_mask[1].sum())
    prompt_len = len(tokenizer(PROMPTS[1])["input_ids"])
    assert row[0] == tokenizer.bos_token_id
    assert tokenizer.decode(row[1:prompt_len]) == PROMPTS[1]
    assert batch.completion_mask[1, :prompt_len].sum() == 0
    assert batch.completion_mask[1, prompt_len:length].all()
    assert row[length - 1] == tokenizer.eos_token_id
    assert tokenizer.decode(row[prompt_len : length - 1]) == COMPLETIONS[1]
    assert (row[length:] == tokenizer.pad_token_id).all()
    assert batch.completion_mask[1, length:].sum() == 0

    cut = encode_batch(tokenizer, PROMPTS, COMPLETIONS, max_length=10)
    assert cut.input_ids.shape[1] == 10
    with pytest.raises(ValueError, match="prompts but"):
        encode_batch(tokenizer, PROMPTS, COMPLETIONS[:2])


def test_sft_loss_counts_completion_tokens_only(model, batch):
    loss, metrics = sft_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    targets = batch.input_ids[:, 1:].masked_fill(batch.completion_mask[:, 1:] == 0, -100)
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100)
    assert metrics["sft_loss"] == pytest.approx(float(expected.detach()), rel=1e-4)
    assert metrics["tokens"] == float(batch.completion_mask.sum())
    # The MoE auxiliary losses are folded into the returned loss and reported.
    assert float(loss.detach()) == pytest.approx(metrics["sft_loss"] + metrics["moe_aux_total"], rel=1e-5)
    # Mixtral's balance loss is about top_k when routing is even, larger when it is skewed.
    assert metrics["moe_balance_loss"] >= 0.9 * model.config.num_experts_per_tok
    assert metrics["moe_z_loss"] > 0.0


def test_lm_and_sft_losses_decrease(model, tokenizer, batch):
    texts = [p + c for p, c in zip(PROMPTS, COMPLETIONS)]
    docs = encode_texts(tokenizer, texts)
    lm_model = copy.deepcopy(model)
    losses = _train(lm_model, lambda: lm_loss(lm_model, docs.input_ids, docs.attention_mask))
    assert losses[-1] < 0.7 * losses[0]
    sft_model = copy.deepcopy(model)
    losses = _train(sft_model, lambda: sft_loss(sft_model, batch.input_ids, batch.attention_mask, batch.completion_mask))
    assert losses[-1] < 0.7 * losses[0]


def test_group_advantages():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.5])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    advantages = group_advantages(rewards, groups)
    first = advantages[:4]
    assert first[0] > 0 and (first[1:] < 0).all()
    assert float(first.sum()) == pytest.approx(0.0, abs=1e-5)
    assert float(first.std()) == pytest.approx(1.0, rel=1e-3)
    # All-equal group and a singleton group carry no signal.
    assert advantages[4:].abs().max() == 0.0
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(rewards, groups[:3])


def _sequence_logprob(model, batch) -> torch.Tensor:
    """Summed completion log-probability per row. (B,)"""
    logprobs = sequence_logprobs(model, batch.input_ids, batch.attention_mask)
    return (logprobs * batch.completion_mask).sum(dim=1)


def test_grpo_raises_rewarded_and_lowers_unrewarded(model, tokenizer):
    # Two tasks, four sampled completions each; the right answers are rewarded.
    prompts = ["12+34=?\n"] * 4 + ["9+9=?\n"] * 4
    completions = ["Answer: 46\n", "Answer: 47\n", "Answer: 45\n", "Answer: 64\n",
                   "Answer: 81\n", "Answer: 18\n", "Answer: 99\n", "Answer: 0\n"]
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    batch = encode_batch(tokenizer, prompts, completions)
    # First make these answers the policy's own candidates (as if it had sampled them): brief SFT on all eight.
    _train(model, lambda: sft_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask), steps=10)
    old = sequence_logprobs(model, batch.input_ids, batch.attention_mask)
    before = _sequence_logprob(model, batch)

    def step():
        return grpo_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask, old, rewards, groups)

    # Plain SGD with small steps follows the loss's gradient itself (Adam's per-parameter scaling would not).
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss, _ = step()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    after = _sequence_logprob(model, batch)
    change = after - before
    rewarded, unrewarded = rewards == 1, rewards == 0
    assert (change[rewarded] > 0).all(), change
    assert change[unrewarded].mean() < 0, change
    # Within each task, the rewarded sample gains on every unrewarded sibling.
    for group in (0, 1):
        in_group = groups == group
        assert (change[in_group & rewarded].min() > change[in_group & unrewarded]).all(), change
        # And the unrewarded samples together lose probability mass.
        assert torch.logsumexp(after[in_group & unrewarded], 0) < torch.logsumexp(before[in_group & unrewarded], 0)
    assert losses[-1] < losses[0]


def test_grpo_clips_large_ratios_and_reports_kl(model, tokenizer, batch):
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
    groups = torch.tensor([0, 0, 0, 0])
    current = sequence_logprobs(model, batch.input_ids, batch.attention_mask)
    # Old log-probs far below the current ones: every ratio exceeds 1 + clip.
    _, metrics = grpo_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask, current - 1.0,
                           rewards, groups, clip=0.2)
    assert metrics["clip_fraction"] == pytest.approx(1.0)
    # Positive-advantage rows are clipped (no gradient), so only the negative ones push the loss.
    _, on_policy = grpo_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask, None,
                             rewards, groups)
    assert on_policy["ratio_mean"] == pytest.approx(1.0)
    assert on_policy["clip_fraction"] == 0.0

    reference = copy.deepcopy(model)
    _, same = grpo_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask, None, rewards,
                        groups, ref_model=reference, kl_coef=0.1)
    assert same["kl_to_ref"] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="ref_model"):
        grpo_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask, None, rewards, groups,
                  kl_coef=0.1)
    with pytest.raises(ValueError, match="one per sequence"):
        grpo_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask, None, rewards[:2],
                  groups[:2])


def test_grpo_kl_penalty_decreases(model, tokenizer, batch):
    # With no reward signal (one group, equal rewards), only the KL term moves the policy: back to the reference.
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    rewards = torch.ones(4)
    groups = torch.zeros(4, dtype=torch.long)
    kls = []

    def step():
        loss, metrics = grpo_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask, None,
                                  rewards, groups, ref_model=reference, kl_coef=1.0)
        kls.append(metrics["kl_to_ref"])
        return loss, metrics

    _train(model, step, steps=8, lr=3e-3)
    assert kls[-1] < 0.7 * kls[0]


def test_distill_loss_decreases_and_is_zero_for_a_copy(model, tokenizer, batch):
    teacher = build_model("tiny", vocab_size=len(tokenizer), seed=1)
    teacher.eval()
    _, same = distill_loss(model, copy.deepcopy(model), batch.input_ids, batch.attention_mask,
                           batch.completion_mask, temperature=2.0)
    assert same["distill_kl"] == pytest.approx(0.0, abs=1e-5)
    losses = _train(model, lambda: distill_loss(model, teacher, batch.input_ids, batch.attention_mask,
                                                batch.completion_mask, temperature=2.0))
    assert losses[-1] < 0.7 * losses[0]
    with pytest.raises(ValueError, match="temperature"):
        distill_loss(model, teacher, batch.input_ids, batch.attention_mask, batch.completion_mask, temperature=0)


def _addition_documents(count: int) -> list[str]:
    from verifarm.envs.catalog import get_family

    family = get_family("verifarm/Addition-v0")
    return [(lambda task: task.prompt + task.reference)(family.generate(seed=i, difficulty=3)) for i in range(count)]


def test_router_load_stays_balanced(model, tokenizer):
    """The folded-in balance loss keeps routing even; without it (coefficient 0) the same run drifts further."""
    docs = encode_texts(tokenizer, _addition_documents(32))
    top_k = model.config.num_experts_per_tok
    balance = {}
    for coefficient in (model.config.router_aux_loss_coef, 0.0):
        trained = copy.deepcopy(model)
        trained.config.router_aux_loss_coef = coefficient
        _train(trained, lambda: lm_loss(trained, docs.input_ids, docs.attention_mask), steps=30, lr=3e-3)
        balance[coefficient] = expert_load_report(trained, docs.input_ids, docs.attention_mask).balance_loss
    with_aux = balance[model.config.router_aux_loss_coef]
    # Mixtral's balance loss is top_k for perfectly even routing probabilities and grows with skew.
    assert with_aux < 1.05 * top_k, balance
    assert with_aux < balance[0.0], balance
    report = expert_load_report(trained, docs.input_ids, docs.attention_mask)
    assert len(report.load) == model.config.num_hidden_layers
    assert all(abs(sum(layer) - 1.0) < 1e-4 for layer in report.load)


def test_losses_reject_bad_shapes(model, batch):
    with pytest.raises(ValueError, match="masks must match"):
        sft_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask[:, :-1])
    with pytest.raises(ValueError, match="at least two tokens"):
        lm_loss(model, batch.input_ids[:, :1], batch.attention_mask[:, :1])
    with pytest.raises(ValueError, match="no target tokens"):
        sft_loss(model, batch.input_ids, batch.attention_mask, torch.zeros_like(batch.completion_mask))
