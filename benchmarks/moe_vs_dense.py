"""MoE preset vs a dense model of equal active parameters: validation loss after the same training time.

The dense baseline is Mixtral's dense counterpart (`MistralForCausalLM`) with the same attention and an MLP
of `experts_per_token * expert_intermediate_size`, so each token passes through as many FFN weights as in
the MoE. Both train on the same corpus (worked arithmetic + standard-library Python) with the same
optimizer and schedule, one step each in turn, so a busy machine slows both alike; each gets the same
budget of CPU seconds (with one thread, the wall time it would take on a dedicated core).

    python benchmarks/moe_vs_dense.py --quick
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch
from transformers import MistralConfig, MistralForCausalLM

from verifarm.policy.losses import lm_loss, target_logprobs
from verifarm.policy.model import build_model, count_parameters
from verifarm.policy.tokenizer import build_tokenizer
from verifarm.policy.training import TrainConfig, encode_texts, learning_rate_at, make_optimizer
from verifarm.trainer.corpus import CorpusConfig, build_corpus


def dense_counterpart(moe) -> MistralForCausalLM:
    """A dense model with the MoE's attention and embeddings and an FFN as wide as its top-k experts together."""
    c = moe.config
    config = MistralConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size * c.num_experts_per_tok,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads,
        max_position_embeddings=c.max_position_embeddings,
        rope_parameters=c.rope_parameters,
        pad_token_id=c.pad_token_id,
        bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
        tie_word_embeddings=c.tie_word_embeddings,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return MistralForCausalLM(config)


def dense_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class Run:
    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    steps: int = 0
    last_loss: float = math.nan


@torch.no_grad()
def validation_loss(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> float:
    """Token-weighted next-token loss on held-out documents (no auxiliary losses)."""
    model.eval()
    total, tokens = 0.0, 0
    for start in range(0, len(texts), batch_size):
        batch = encode_texts(tokenizer, texts[start : start + batch_size], max_length)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        mask = batch.attention_mask.clone()
        mask[:, 0] = 0
        total += float(-(target_logprobs(logits, batch.input_ids) * mask).sum())
        tokens += int(mask.sum())
    model.train()
    return total / tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seconds", type=float, default=120.0, help="CPU-seconds training budget per model")
    parser.add_argument("--quick", action="store_true", help="30 s per model and a smaller validation set")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    seconds = 30.0 if args.quick else args.seconds
    if seconds <= 0:
        raise ValueError(f"--seconds must be positive, got {seconds}")
    torch.set_num_threads(args.threads)

    corpus = build_corpus(
        CorpusConfig(
            seed=args.seed,
            arithmetic_documents=3000,
            stdlib_documents=1500,
            stdlib_chunk_chars=args.max_length,
            arithmetic_max_digits=4,
        )
    )
    validation = list(corpus.heldout)[: 128 if args.quick else 256]
    train = list(corpus.train)
    tokenizer = build_tokenizer()
    config = TrainConfig(
        steps=1_000_000,
        max_seconds=seconds,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_length=args.max_length,
        seed=args.seed,
    )

    moe = build_model(args.preset, len(tokenizer), seed=args.seed)
    dense = dense_counterpart(moe)
    moe_counts = count_parameters(moe)
    print(
        f"corpus: {len(train)} training, {len(validation)} validation documents; budget {seconds:.0f} CPU-s "
        f"per model, {args.threads} thread(s)"
    )
    print(f"MoE   ({args.preset}): {moe_counts['total']:,} parameters, {moe_counts['active']:,} active per token")
    print(f"dense (Mistral): {dense_parameters(dense):,} parameters, all active")

    runs = [Run("moe", moe, make_optimizer(moe, config)), Run("dense", dense, make_optimizer(dense, config))]
    for run in runs:
        run.model.train()
    generator = torch.Generator().manual_seed(args.seed)
    # Both models see the same batches in the same order.
    while any(run.cpu_seconds < seconds for run in runs):
        indices = torch.randint(len(train), (config.batch_size,), generator=generator).tolist()
        batch = encode_texts(tokenizer, [train[i] for i in indices], config.max_length)
        for run in runs:
            if run.cpu_seconds >= seconds:
                continue
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            lr = learning_rate_at(config, run.steps, run.cpu_seconds / seconds)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            loss, metrics = lm_loss(run.model, batch.input_ids, batch.attention_mask)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
            run.optimizer.step()
            run.cpu_seconds += time.process_time() - cpu_start
            run.wall_seconds += time.perf_counter() - wall_start
            run.steps += 1
            run.last_loss = metrics["lm_loss"]

    losses = {}
    for run in runs:
        losses[run.name] = validation_loss(run.model, tokenizer, validation, args.max_length)
        print(
            f"{run.name:<5}: {run.steps} steps in {run.cpu_seconds:.0f} CPU-s ({run.wall_seconds:.0f} s wall), "
            f"last train loss {run.last_loss:.4f}, validation loss {losses[run.name]:.4f}"
        )
    print(
        f"validation loss MoE / dense at equal training time: {losses['moe'] / losses['dense']:.3f} "
        "(below 1: the MoE is better)"
    )


if __name__ == "__main__":
    main()
