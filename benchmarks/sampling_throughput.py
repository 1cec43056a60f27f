"""Sampling throughput: our KV-cached batched MoE sampler against `transformers` `generate`, same weights.

The workload is one RL sampling batch of 64 rows: prompts from our own envs (short arithmetic and
long Python-function prompts) with n samples each, temperature 1, up to --max-new-tokens. Both
sides honour eos and are credited only with tokens up to and including it. Runs alternate
(ours, theirs, ours, ...) so machine load hits both alike; the speedup is the median over the
pairs of (our tok/s / their tok/s), which shrugs off load swings better than best-of-each.

    python benchmarks/sampling_throughput.py            # tiny preset, batch 64, 256 new tokens
    python benchmarks/sampling_throughput.py --quick    # fewer tokens, one run each
    python benchmarks/sampling_throughput.py --checkpoint PATH   # a trained HF checkpoint instead
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch


@dataclass
class Run:
    tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def workload_prompts(count: int, seed: int) -> list[str]:
    """Half short arithmetic prompts, half long Python-function prompts, drawn from our envs."""
    from verifarm.envs.catalog import get_family

    arithmetic, python = get_family("verifarm/Addition-v0"), get_family("verifarm/PythonFunction-v0")
    prompts = []
    for index in range(count):
        family = arithmetic if index % 2 == 0 else python
        difficulty = 3 if family is arithmetic else family.min_difficulty
        prompts.append(family.generate(seed + index, difficulty).prompt)
    return prompts


def run_ours(policy, prompts: list[str], n: int, max_new_tokens: int, seed: int) -> Run:
    start = time.perf_counter()
    results = policy.sample(prompts, n=n, temperature=1.0, max_new_tokens=max_new_tokens, seed=seed)
    seconds = time.perf_counter() - start
    return Run(sum(len(c.token_ids) for row in results for c in row), seconds)


def run_transformers(model, tokenizer, prompts: list[str], n: int, max_new_tokens: int, seed: int) -> Run:
    eos = tokenizer.eos_token_id
    tokenizer.padding_side = "left"
    batch = tokenizer([p for p in prompts for _ in range(n)], return_tensors="pt", padding=True)
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(**batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=eos)
    seconds = time.perf_counter() - start
    generated = output[:, batch["input_ids"].shape[1]:].tolist()
    return Run(sum(row.index(eos) + 1 if eos in row else len(row) for row in generated), seconds)


def greedy_parity(policy, model, tokenizer, prompts: list[str], tokens: int) -> bool:
    """The fast path and `generate` agree token for token under greedy decoding (same weights)."""
    ours = policy.sample(prompts, n=1, temperature=0, max_new_tokens=tokens)
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        output = model.generate(**batch, do_sample=False, max_new_tokens=tokens,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    eos = tokenizer.eos_token_id
    for row, theirs in zip(ours, output[:, batch["input_ids"].shape[1]:].tolist()):
        theirs = theirs[: theirs.index(eos) + 1] if eos in theirs else theirs
        if row[0].token_ids != theirs:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="model preset with random weights (default tiny)")
    parser.add_argument("--checkpoint", default=None, help="a Hugging Face checkpoint folder instead of a preset")
    parser.add_argument("--prompts", type=int, default=8, help="distinct prompts (default 8)")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt; batch = prompts x n (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    # Five pairs: each run's credited tokens depend on where its samples hit eos, and one pair's ratio
    # ranged 2.7-3.9 within a single run on an idle machine.
    parser.add_argument("--repeats", type=int, default=5, help="alternating run pairs (default 5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for both sides (default 1: tiny ops gain nothing from more)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="128 new tokens, one run per side")
    args = parser.parse_args()
    if args.quick:
        args.max_new_tokens, args.repeats = min(args.max_new_tokens, 128), 1
    if min(args.prompts, args.n, args.max_new_tokens, args.repeats, args.threads) < 1:
        raise ValueError("--prompts, --n, --max-new-tokens, --repeats and --threads must all be at least 1")
    torch.set_num_threads(args.threads)

    from verifarm.policy.model import build_model, count_parameters
    from verifarm.policy.sampling import LocalPolicy
    from verifarm.policy.tokenizer import build_tokenizer

    if args.checkpoint:
        policy = LocalPolicy.from_dir(args.checkpoint, version=0)
        source = args.checkpoint
    else:
        tokenizer = build_tokenizer()
        policy = LocalPolicy(build_model(args.preset, len(tokenizer), seed=args.seed), tokenizer, version=0)
        source = f"preset {args.preset} (random weights)"
    model, tokenizer = policy.model, policy.tokenizer
    params = count_parameters(model)
    prompts = workload_prompts(args.prompts, args.seed)
    prompt_lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    print(f"model: {source}, {params['total'] / 1e6:.2f}M params ({params['active'] / 1e6:.2f}M active), "
          f"{type(model).__name__}")
    print(f"batch: {args.prompts} prompts x n={args.n} = {args.prompts * args.n} rows, prompt tokens "
          f"{min(prompt_lengths)}..{max(prompt_lengths)}, max_new_tokens={args.max_new_tokens}, "
          f"temperature 1.0, threads={args.threads}")
    print(f"greedy parity with generate (16 tokens): {greedy_parity(policy, model, tokenizer, prompts, 16)}")

    ours, theirs = [], []
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        ours.append(run_ours(policy, prompts, args.n, args.max_new_tokens, seed))
        print(f"  run {repeat}: ours {ours[-1].tokens} tokens in {ours[-1].seconds:.2f}s "
              f"= {ours[-1].tokens_per_second:.0f} tok/s", flush=True)
        theirs.append(run_transformers(model, tokenizer, prompts, args.n, args.max_new_tokens, seed))
        print(f"  run {repeat}: transformers generate {theirs[-1].tokens} tokens in {theirs[-1].seconds:.2f}s "
              f"= {theirs[-1].tokens_per_second:.0f} tok/s", flush=True)
    best_ours = max(run.tokens_per_second for run in ours)
    best_theirs = max(run.tokens_per_second for run in theirs)
    ratios = sorted(a.tokens_per_second / b.tokens_per_second for a, b in zip(ours, theirs))
    print(f"best runs: ours {best_ours:.0f} tok/s, transformers generate {best_theirs:.0f} tok/s; "
          f"per-pair ratios {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"speedup (ours / transformers generate, median of pairs): {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
