"""The tiny MoE preset, pre-trained on worked 3-digit additions, solves held-out ones greedily (>= 95% exact)."""

from __future__ import annotations

import time

import pytest
import torch

from verifarm.envs.catalog import get_family
from verifarm.policy.model import build_model, expert_load_report
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.tokenizer import build_tokenizer
from verifarm.policy.training import TrainConfig, encode_texts, pretrain

DIGITS = 3
HELD_OUT_TASKS = 200
HELD_OUT_SEED = 10**9  # far from the training seeds 0..N
# Tuned on 2 busy cores: one thread (a second one only helps on an idle machine, and OpenMP spin-waits
# badly on a busy one), batch 64, peak learning rate 3e-3 with cosine decay. Measured with seeds 0, 1, 2:
# 100% held-out exact match after 700 steps (~180 CPU-seconds), 67-96% already at 300-500 steps. A peak
# of 1e-2 stays on the plateau where the model has not learnt which prompt digit each column reads
# (seed 1: 1% after 700 steps), so it is not used.
TRAIN_CONFIG = TrainConfig(
    steps=700, batch_size=64, learning_rate=3e-3, warmup_steps=30, min_lr_ratio=0.1, max_length=64, seed=0
)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_tiny_preset_learns_three_digit_addition():
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        family = get_family("verifarm/Addition-v0")
        train_tasks = [
            family.generate(seed=i, difficulty=DIGITS) for i in range(TRAIN_CONFIG.steps * TRAIN_CONFIG.batch_size)
        ]
        texts = [task.prompt + task.reference for task in train_tasks]
        seen = {task.prompt for task in train_tasks}
        held_out = [
            task
            for task in (family.generate(seed=HELD_OUT_SEED + i, difficulty=DIGITS) for i in range(2 * HELD_OUT_TASKS))
            if task.prompt not in seen
        ]
        held_out = held_out[:HELD_OUT_TASKS]
        assert len(held_out) == HELD_OUT_TASKS

        tokenizer = build_tokenizer()
        model = build_model("tiny", len(tokenizer), seed=0)
        started = time.perf_counter()
        metrics = pretrain(model, tokenizer, texts, TRAIN_CONFIG)
        train_seconds = time.perf_counter() - started

        policy = LocalPolicy(model, tokenizer, version=0)
        samples = policy.sample([task.prompt for task in held_out], n=1, temperature=0.0, max_new_tokens=64)
        verdicts = [family.verify(task, completions[0].text) for task, completions in zip(held_out, samples)]
        accuracy = sum(verdict.passed for verdict in verdicts) / len(verdicts)
        failures = [
            (task.prompt, completions[0].text)
            for task, completions, verdict in zip(held_out, samples, verdicts)
            if not verdict.passed
        ]

        report = expert_load_report(model, *_as_batch(tokenizer, texts[:64]))
        print(
            f"trained {metrics['steps']:.0f} steps in {train_seconds:.0f}s (loss {metrics['final_loss']:.4f}); "
            f"held-out exact match {accuracy:.1%}; expert load max/mean {report.max_over_mean:.2f}"
        )
        assert accuracy >= 0.95, f"exact match {accuracy:.1%}; first failures: {failures[:3]}"
        # Training kept the routers balanced (Mixtral's balance loss is top_k at perfect balance).
        assert report.balance_loss < 1.1 * model.config.num_experts_per_tok
    finally:
        torch.set_num_threads(previous_threads)


def _as_batch(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = encode_texts(tokenizer, texts)
    return batch.input_ids, batch.attention_mask
