"""Training losses on the tiny MoE preset: they decrease, policy gradient moves the right way, routers stay balanced."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from verifarm.policy.losses import (
    distill_loss,
    group_advantages,
    grpo_loss,
    lm_loss,
    sequence_logprobs,
    sft_loss,
)
from verifarm.policy.model import build_model, expert_load_report
from verifarm.policy.training import TrainConfig, align_behaviour_logprobs, encode_batch, encode_texts, make_optimizer

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
        loss, _ = loss_fn()
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
    losses = _train(
        sft_model, lambda: sft_loss(sft_model, batch.input_ids, batch.attention_mask, batch.completion_mask)
    )
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
    completions = [
        "Answer: 46\n",
        "Answer: 47\n",
        "Answer: 45\n",
        "Answer: 64\n",
        "Answer: 81\n",
        "Answer: 18\n",
        "Answer: 99\n",
        "Answer: 0\n",
    ]
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
    _, metrics = grpo_loss(
        model, batch.input_ids, batch.attention_mask, batch.completion_mask, current - 1.0, rewards, groups, clip=0.2
    )
    assert metrics["clip_fraction"] == pytest.approx(1.0)
    # Positive-advantage rows are clipped (no gradient), so only the negative ones push the loss.
    _, on_policy = grpo_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask, None, rewards, groups)
    assert on_policy["ratio_mean"] == pytest.approx(1.0)
    assert on_policy["clip_fraction"] == 0.0

    reference = copy.deepcopy(model)
    _, same = grpo_loss(
        model,
        batch.input_ids,
        batch.attention_mask,
        batch.completion_mask,
        None,
        rewards,
        groups,
        ref_model=reference,
        kl_coef=0.1,
    )
    assert same["kl_to_ref"] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="ref_model"):
        grpo_loss(
            model, batch.input_ids, batch.attention_mask, batch.completion_mask, None, rewards, groups, kl_coef=0.1
        )
    with pytest.raises(ValueError, match="one per sequence"):
        grpo_loss(model, batch.input_ids, batch.attention_mask, batch.completion_mask, None, rewards[:2], groups[:2])


def test_truncated_importance_sampling_uses_the_behaviour_logprobs_and_is_bounded(model, batch):
    args = (model, batch.input_ids, batch.attention_mask, batch.completion_mask, None)
    rewards, groups = torch.tensor([1.0, 0.0, 0.5, 0.0]), torch.tensor([0, 0, 0, 0])
    current = sequence_logprobs(model, batch.input_ids, batch.attention_mask)
    _, plain = grpo_loss(*args, rewards, groups)
    _, metrics = grpo_loss(*args, rewards, groups, behaviour_logprobs=current)
    assert metrics["pg_loss"] == pytest.approx(plain["pg_loss"], rel=1e-6)
    assert metrics["tis_weight_mean"] == pytest.approx(1.0)

    # Per row: the sampler gave its tokens less (weight e^0.3), more (e^-0.5), far less (capped at 2)
    # probability than the trainer's float32 weights, or recorded none (NaN, weight 1).
    shift = torch.tensor([0.3, -0.5, 50.0, float("nan")])[:, None]
    behaviour = current - shift
    _, metrics = grpo_loss(*args, rewards, groups, behaviour_logprobs=behaviour, tis_cap=2.0)
    mask = batch.completion_mask.float() * batch.attention_mask.float()
    mask[:, 0] = 0
    weights = torch.tensor([0.3, -0.5, 50.0, 0.0]).exp().clamp(max=2.0)[:, None]
    advantages = group_advantages(rewards, groups)[:, None]
    # On-policy ratio 1: each token's objective is its advantage, weighted by the truncated IS weight.
    expected = -(weights * advantages * mask).sum() / mask.sum()
    assert metrics["pg_loss"] == pytest.approx(float(expected), abs=1e-6)
    assert metrics["pg_loss"] != pytest.approx(plain["pg_loss"], abs=1e-3)
    assert metrics["tis_truncated_fraction"] == pytest.approx(float(mask[2].sum() / mask.sum()))

    # Bounded: however far off the sampler was, the gradient is at most the capped one.
    def grad_norm(behaviour_logprobs):
        model.zero_grad()
        grpo_loss(*args, rewards, groups, behaviour_logprobs=behaviour_logprobs, tis_cap=2.0)[0].backward()
        return torch.sqrt(sum((p.grad**2).sum() for p in model.parameters() if p.grad is not None))

    assert float(grad_norm(current - 1000.0)) == pytest.approx(
        float(grad_norm(current - torch.log(torch.tensor(2.0)))), rel=1e-4
    )
    with pytest.raises(ValueError, match="tis_cap"):
        grpo_loss(*args, rewards, groups, behaviour_logprobs=current, tis_cap=0.5)
    with pytest.raises(ValueError, match="behaviour_logprobs"):
        grpo_loss(*args, rewards, groups, behaviour_logprobs=current[:, 1:])


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
        loss, metrics = grpo_loss(
            model,
            batch.input_ids,
            batch.attention_mask,
            batch.completion_mask,
            None,
            rewards,
            groups,
            ref_model=reference,
            kl_coef=1.0,
        )
        kls.append(metrics["kl_to_ref"])
        return loss, metrics

    _train(model, step, steps=8, lr=3e-3)
    assert kls[-1] < 0.7 * kls[0]


def test_distill_loss_decreases_and_is_zero_for_a_copy(model, tokenizer, batch):
    teacher = build_model("tiny", vocab_size=len(tokenizer), seed=1)
    teacher.eval()
    _, same = distill_loss(
        model, copy.deepcopy(model), batch.input_ids, batch.attention_mask, batch.completion_mask, temperature=2.0
    )
    assert same["distill_kl"] == pytest.approx(0.0, abs=1e-5)
    losses = _train(
        model,
        lambda: distill_loss(
            model, teacher, batch.input_ids, batch.attention_mask, batch.completion_mask, temperature=2.0
        ),
    )
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
        _train(trained, functools.partial(lm_loss, trained, docs.input_ids, docs.attention_mask), steps=30, lr=3e-3)
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


def test_behaviour_logprobs_align_with_completion_tokens_up_to_the_first_difference(tokenizer):
    batch = encode_batch(tokenizer, ["1+1=?\n", "2+2=?\n"], ["2", "4!"])
    sampled_two = tokenizer("2", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    # Row 1 was sampled as "4?" and its text was later edited to "4!": only "4" lines up.
    sampled_four = tokenizer("4?", add_special_tokens=False)["input_ids"]
    aligned = align_behaviour_logprobs(batch, [sampled_two, sampled_four], [[-0.5, -0.25], [-1.0, -2.0]])
    row0 = aligned[0][batch.completion_mask[0].bool()]
    assert row0.tolist() == [-0.5, -0.25]
    row1 = aligned[1][batch.completion_mask[1].bool()]
    assert row1[0] == -1.0 and torch.isnan(row1[1:]).all()
    assert torch.isnan(aligned[~batch.completion_mask.bool()]).all()
    with pytest.raises(ValueError, match="each of the 2 rows"):
        align_behaviour_logprobs(batch, [sampled_two], [[-0.5]])
