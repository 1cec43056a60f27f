"""The speculative-sampling rule on its own: exact output distribution (chi-square), greedy equality."""

import pytest
import torch
from scipy.stats import chisquare

from verifarm.policy.speculative import DraftLength, accept_drafts, best_draft_length, sampling_distribution

VOCAB = 5
K = 2


def markov_target(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A start distribution (V,) and a transition matrix (V, V) standing in for a policy."""
    start = torch.rand(VOCAB, generator=generator) ** 2 + 0.02
    transition = torch.rand(VOCAB, VOCAB, generator=generator) ** 3 + 0.01
    return start / start.sum(), transition / transition.sum(-1, keepdim=True)


def speculate_once(start, transition, draft_dist, rows: int, generator, rule=accept_drafts):
    """One round over `rows` independent rows: the drafter proposes K tokens from `draft_dist` (K, V),
    the target scores them as the Markov chain does; returns the first two emitted tokens (rows, 2)."""
    draft_tokens = torch.multinomial(draft_dist, rows, replacement=True, generator=generator).T  # (rows, K)
    draft_probs = draft_dist.expand(rows, K, VOCAB)
    # q before draft 0 is the start distribution; before draft i>0 (and after the last) it depends on
    # the draft token just before, as a policy's next-token distribution depends on its context.
    target_probs = torch.cat((start.expand(rows, 1, VOCAB), transition[draft_tokens]), dim=1)  # (rows, K+1, V)
    verdict = rule(draft_tokens, draft_probs, target_probs, generator)
    emitted = torch.cat((draft_tokens, torch.zeros(rows, 1, dtype=torch.long)), dim=1)
    emitted.scatter_(1, verdict.accepted[:, None], verdict.next_tokens[:, None])
    # Rows that kept no draft emitted one token only: their second comes from the next round, which
    # restarts from the chain at that token; draw it from the chain directly for the frequency check.
    second = torch.where(
        verdict.accepted >= 1,
        emitted[:, 1],
        torch.multinomial(transition[emitted[:, 0]], 1, generator=generator).squeeze(-1),
    )
    return torch.stack((emitted[:, 0], second), dim=1), verdict.accepted


def pair_frequencies_fit(pairs, start, transition) -> float:
    observed = torch.bincount(pairs[:, 0] * VOCAB + pairs[:, 1], minlength=VOCAB * VOCAB).double()
    joint = (start[:, None] * transition).reshape(-1).double()
    expected = joint / joint.sum() * len(pairs)
    return chisquare(observed.numpy(), expected.numpy()).pvalue


def test_emitted_tokens_follow_the_target_distribution_at_temperature_one():
    generator = torch.Generator().manual_seed(0)
    start, transition = markov_target(generator)
    # A drafter that is wrong in a different way at each position, with mass on every token.
    draft_dist = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.1], [0.05, 0.05, 0.3, 0.3, 0.3]])
    pairs, accepted = speculate_once(start, transition, draft_dist, 200_000, generator)
    assert pair_frequencies_fit(pairs, start, transition) > 1e-3
    # Rows do keep different numbers of drafts: 0, 1 and all K all occur.
    assert set(accepted.tolist()) == set(range(K + 1))


def test_the_chi_square_check_catches_a_rule_that_keeps_every_draft():
    """The frequency test has power: a rule that skips the rejection step emits the drafter's tokens."""
    generator = torch.Generator().manual_seed(1)
    start, transition = markov_target(generator)
    draft_dist = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.1], [0.05, 0.05, 0.3, 0.3, 0.3]])

    def keep_everything(draft_tokens, draft_probs, target_probs, generator):
        verdict = accept_drafts(draft_tokens, draft_probs, target_probs, generator)
        return type(verdict)(torch.full_like(verdict.accepted, K), verdict.next_tokens)

    pairs, _ = speculate_once(start, transition, draft_dist, 200_000, generator, rule=keep_everything)
    assert pair_frequencies_fit(pairs, start, transition) < 1e-6


def test_a_perfect_drafter_is_always_accepted_and_a_disjoint_one_never():
    generator = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(64, K + 1, VOCAB, generator=generator), dim=-1)
    drafts = torch.multinomial(probs[:, :K].reshape(-1, VOCAB), 1, generator=generator).view(64, K)
    assert accept_drafts(drafts, probs[:, :K], probs, generator).accepted.eq(K).all()
    # The drafter only proposes token 0, which the target never emits: every row rejects at once and
    # the replacement comes from the target's own distribution.
    target = probs.clone()
    target[..., 0] = 0
    verdict = accept_drafts(
        torch.zeros(64, K, dtype=torch.long),
        torch.nn.functional.one_hot(torch.zeros(64, K, dtype=torch.long), VOCAB).float(),
        target,
        generator,
    )
    assert verdict.accepted.eq(0).all() and verdict.next_tokens.ne(0).all()


def test_greedy_keeps_drafts_up_to_the_first_that_is_not_the_argmax():
    logits = torch.randn(3, K + 1, VOCAB, generator=torch.Generator().manual_seed(3))
    argmax = logits.argmax(-1)  # (3, K+1)
    drafts = argmax[:, :K].clone()
    drafts[1, 1] = (drafts[1, 1] + 1) % VOCAB  # row 1: second draft wrong
    drafts[2, 0] = (drafts[2, 0] + 1) % VOCAB  # row 2: first draft wrong
    draft_probs = sampling_distribution(torch.nn.functional.one_hot(drafts, VOCAB).float(), 0, 1.0)
    for seed in range(20):  # no randomness may change a greedy verdict
        verdict = accept_drafts(
            drafts, draft_probs, sampling_distribution(logits, 0, 1.0), torch.Generator().manual_seed(seed)
        )
        assert verdict.accepted.tolist() == [2, 1, 0]
        assert verdict.next_tokens.tolist() == [argmax[0, 2], argmax[1, 1], argmax[2, 0]]


def test_top_p_nucleus_is_respected_by_the_replacement_token():
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(4000, K + 1, VOCAB, generator=generator) * 3
    target = sampling_distribution(logits, 0.7, 0.5)
    drafts = torch.randint(0, VOCAB, (4000, K), generator=generator)
    verdict = accept_drafts(drafts, torch.full((4000, K, VOCAB), 1 / VOCAB), target, generator)
    chosen_mass = target[torch.arange(4000), verdict.accepted].gather(-1, verdict.next_tokens[:, None])
    assert chosen_mass.gt(0).all()


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="target_probs"):
        accept_drafts(torch.zeros(2, K, dtype=torch.long), torch.ones(2, K, VOCAB), torch.ones(2, K, VOCAB), None)


def test_draft_length_follows_the_acceptance_rate():
    # A drafter that is always right is worth the longest rounds, one that is never right the shortest.
    assert best_draft_length(1.0, 8) == 8 and best_draft_length(0.0, 8) == 1
    lengths = [best_draft_length(a, 16) for a in (0.3, 0.6, 0.8, 0.9, 0.95, 0.99)]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]
    adaptive = DraftLength(max_tokens=8)
    assert adaptive.next() == 8  # the first round drafts at full length
    adaptive.observe(kept=64 * 8 - 1, rejected=1)  # one rejection in 64 rows of a good drafter: rounds stay long
    assert adaptive.next() == 8
    for _ in range(6):  # rounds where every row rejects its first draft
        adaptive.observe(kept=0, rejected=64)
    assert adaptive.acceptance < 0.05 and adaptive.next() == 1
    for _ in range(12):  # the drafter got good: every row keeps all 8
        adaptive.observe(kept=64 * 8, rejected=0)
    assert adaptive.next() == 8
    adaptive.observe(kept=0, rejected=0)  # a round with no drafts tells nothing
    assert adaptive.next() == 8
