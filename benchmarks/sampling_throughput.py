"""Sampling throughput, side by side in one run: `transformers` `generate`, our exact sampler, + speculative
sampling, + int8 weights, + both, on the same weights, prompts and seeds.

The workload is one RL sampling batch: prompts from our own envs with n samples each, up to
--max-new-tokens, at --temperature. `mixed` is half short arithmetic and half long Python-function prompts,
`arithmetic` is 3-digit additions only (what an arithmetic campaign samples). Every path honours eos and is
credited only with tokens up to and including it. Paths run in turn within each repeat (the order rotates),
so machine load hits all alike; a path's ratio to `generate` is the median over repeats of the ratio of
the two runs of that repeat, which shrugs off load swings better than best-of-each.

    python benchmarks/sampling_throughput.py            # tiny preset (random weights), batch 64, 256 new tokens
    python benchmarks/sampling_throughput.py --quick    # fewer tokens, one repeat
    python benchmarks/sampling_throughput.py --registry ROOT --workload arithmetic --temperature 0.5
        # the newest version of a registry and the drafter published beside it
    python benchmarks/sampling_throughput.py --profile +speculative   # where one path's time goes
    python benchmarks/sampling_throughput.py --ceiling   # the most speculative sampling can gain at this batch

A random-weight preset has no distilled drafter: its drafter is `build_drafter` of the policy, undistilled.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch

from verifarm.envs.catalog import get_family
from verifarm.policy.fast_decode import DecoderOptions, FastMoEDecoder, PromptGroups, split_prompt_cache
from verifarm.policy.model import build_drafter, build_model, count_parameters
from verifarm.policy.registry import CheckpointRegistry, NoCheckpoint
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.speculative import draw, sampling_distribution
from verifarm.policy.tokenizer import build_tokenizer

PATHS = ("generate", "exact", "+speculative", "+int8", "+both", "+bf16kv")
DEFAULT_PATHS = "generate,exact,+speculative,+int8,+both"


@dataclass
class Run:
    tokens: int
    seconds: float
    cpu_seconds: float  # of this thread: time a loaded machine gives other processes is not counted
    proposed: int = 0
    accepted: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    @property
    def tokens_per_cpu_second(self) -> float:
        return self.tokens / self.cpu_seconds


def workload_prompts(count: int, seed: int, workload: str) -> list[str]:
    """`mixed`: half short arithmetic prompts, half long Python-function prompts; `arithmetic`: additions."""
    arithmetic, python = get_family("verifarm/Addition-v0"), get_family("verifarm/PythonFunction-v0")
    prompts = []
    for index in range(count):
        family = arithmetic if workload == "arithmetic" or index % 2 == 0 else python
        difficulty = 3 if family is arithmetic else family.min_difficulty
        prompts.append(family.generate(seed + index, difficulty).prompt)
    return prompts


def path_policy(path: str, model, tokenizer, drafter, draft_tokens: int, adaptive_draft: bool = True):
    """The LocalPolicy that samples along `path` (not `generate`)."""
    options = {
        "exact": DecoderOptions(),
        "+speculative": DecoderOptions(),
        "+int8": DecoderOptions(int8_weights=True),
        "+both": DecoderOptions(int8_weights=True),
        "+bf16kv": DecoderOptions(kv_cache_dtype=torch.bfloat16),
    }
    speculative = path in ("+speculative", "+both")
    return LocalPolicy(
        model,
        tokenizer,
        0,
        drafter=drafter if speculative else None,
        draft_tokens=draft_tokens,
        decoder_options=options[path],
        adaptive_draft=adaptive_draft,
    )


def run_policy(policy, prompts: list[str], n: int, max_new_tokens: int, temperature: float, seed: int) -> Run:
    start, cpu_start = time.perf_counter(), time.thread_time()
    results = policy.sample(prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    seconds, cpu_seconds = time.perf_counter() - start, time.thread_time() - cpu_start
    completions = [c for row in results for c in row]
    return Run(
        sum(len(c.token_ids) for c in completions),
        seconds,
        cpu_seconds,
        sum(c.draft_proposed for c in completions),
        sum(c.draft_accepted for c in completions),
    )


def run_transformers(
    model, tokenizer, prompts: list[str], n: int, max_new_tokens: int, temperature: float, seed: int
) -> Run:
    eos = tokenizer.eos_token_id
    tokenizer.padding_side = "left"
    batch = tokenizer([p for p in prompts for _ in range(n)], return_tensors="pt", padding=True)
    torch.manual_seed(seed)
    sampling = (
        dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else {"do_sample": False}
    )
    start, cpu_start = time.perf_counter(), time.thread_time()
    with torch.inference_mode():
        output = model.generate(
            **batch, **sampling, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos
        )
    seconds, cpu_seconds = time.perf_counter() - start, time.thread_time() - cpu_start
    generated = output[:, batch["input_ids"].shape[1] :].tolist()
    return Run(sum(row.index(eos) + 1 if eos in row else len(row) for row in generated), seconds, cpu_seconds)


def greedy_parity(policy, model, tokenizer, prompts: list[str], tokens: int) -> bool:
    """The fast path and `generate` agree token for token under greedy decoding (same weights)."""
    ours = policy.sample(prompts, n=1, temperature=0, max_new_tokens=tokens)
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        output = model.generate(
            **batch,
            do_sample=False,
            max_new_tokens=tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    eos = tokenizer.eos_token_id
    for row, theirs in zip(ours, output[:, batch["input_ids"].shape[1] :].tolist()):
        theirs = theirs[: theirs.index(eos) + 1] if eos in theirs else theirs
        if row[0].token_ids != theirs:
            return False
    return True


def load_models(args):
    """(model, tokenizer, drafter, description) for the chosen source."""
    if args.registry:
        registry = CheckpointRegistry(args.registry)
        loaded = registry.load()
        try:
            drafter, info = registry.load_drafter(loaded.version)
            made = f"drafter of v{info.distilled_from}, held-out acceptance {info.acceptance_rate}"
        except NoCheckpoint:
            drafter, made = build_drafter(loaded.model), "undistilled drafter (none published)"
        return loaded.model, loaded.tokenizer, drafter, f"{args.registry} v{loaded.version}; {made}"
    if args.checkpoint:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(args.checkpoint).eval()
        return (
            model,
            AutoTokenizer.from_pretrained(args.checkpoint),
            build_drafter(model),
            f"{args.checkpoint}; undistilled drafter",
        )
    tokenizer = build_tokenizer()
    model = build_model(args.preset, len(tokenizer), seed=args.seed).eval()
    return model, tokenizer, build_drafter(model), f"preset {args.preset} (random weights); undistilled drafter"


def profile_path(path: str, model, tokenizer, drafter, prompts, args) -> None:
    """The operators one sampling run of `path` spends its time in (self CPU time, top 15)."""
    from torch.profiler import ProfilerActivity, profile

    policy = path_policy(path, model, tokenizer, drafter, args.draft_tokens, not args.fixed_draft)
    run_policy(policy, prompts, args.n, 16, args.temperature, args.seed)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run = run_policy(policy, prompts, args.n, args.max_new_tokens, args.temperature, args.seed)
    print(f"{path}: {run.tokens} tokens in {run.seconds:.2f}s under the profiler")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def thread_ms(call, repeats: int = 30) -> float:
    """Median thread time of `call` in milliseconds, after a warm-up."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        call()
        times.append(time.thread_time() - start)
    return 1000 * statistics.median(times)


def extend_ms(decoder: FastMoEDecoder, ids: list[list[int]], n: int, widths: tuple[int, ...], vocab: int) -> dict:
    """Thread milliseconds of one `extend` call of each width in `widths`, n rows per prompt of `ids` (sorted by
    length) with 32 generated tokens in each row's cache, laid out as the sampler lays them out."""
    width, rows, generated = max(map(len, ids)), len(ids) * n, 32
    input_ids = torch.tensor([[0] * (width - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    prompt_of = torch.arange(len(ids)).repeat_interleave(n)
    groups = PromptGroups.from_prompt_of(prompt_of.tolist(), len(ids), torch.device("cpu"))
    lengths = mask.sum(-1)[prompt_of]
    slots = generated + max(widths)
    prompt_cache, rotary = decoder.allocate_cache(len(ids), width), decoder.rotary_table(width + slots)
    decoder.prefill(input_ids, mask, prompt_cache, rotary)
    if decoder.rows_hold_prompts(width):
        cache, segments, first = prompt_cache.prompts_per_row(prompt_of, slots), [], width - lengths
    else:
        cache, segments, first = (
            decoder.allocate_cache(rows, slots),
            split_prompt_cache(prompt_cache, list(map(len, ids))),
            None,
        )
    offset = 0 if first is None else width

    def extend(tokens: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        plan = decoder.plan_extend(lengths + at, offset + at, tokens.shape[1], cache, first, rotary)
        return decoder.extend(tokens, None, None, segments, groups, cache, rotary, plan=plan)

    tokens = torch.randint(0, vocab, (rows, slots))
    extend(tokens[:, :generated], torch.zeros(rows, dtype=torch.long))
    at = torch.full((rows,), generated)
    return {q: thread_ms(lambda q=q: extend(tokens[:, generated : generated + q], at)) for q in widths}


def speculative_ceiling(model, tokenizer, drafter, prompts, args) -> None:
    """The most speculative sampling can gain over the exact sampler at this batch on this machine: the exact
    sampler's cost per step against a round's verifying forward over k+1 positions plus k drafter calls and draws,
    each timed alone, with every draft kept and nothing else in a round (plans, acceptance, round ends) counted."""
    exact = path_policy("exact", model, tokenizer, drafter, args.draft_tokens)
    step_costs = []
    for repeat in range(6):
        start = time.thread_time()
        results = exact.sample(
            prompts, n=args.n, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=repeat
        )
        steps = max(len(c.token_ids) for row in results for c in row)
        step_costs.append(1000 * (time.thread_time() - start) / steps)  # the prefill included: a generous step
    step_ms = statistics.median(step_costs[1:])  # the first run warms up

    ids = sorted((tokenizer(p)["input_ids"] for p in prompts), key=len)  # shortest first, as the sampler lays out
    rows, k = len(ids) * args.n, args.draft_tokens
    policy_ms = extend_ms(FastMoEDecoder(model), ids, args.n, (1, k + 1), len(tokenizer))
    timings = {("policy", q): ms for q, ms in policy_ms.items()}
    timings["drafter", 1] = extend_ms(FastMoEDecoder(drafter), ids, args.n, (1,), len(tokenizer))[1]
    logits = torch.randn(rows, model.config.vocab_size)
    generator = torch.Generator().manual_seed(0)
    draw_ms = thread_ms(lambda: draw(sampling_distribution(logits, args.temperature or 1.0, 1.0), generator))
    verify_ms, draft_ms = timings["policy", k + 1], timings["drafter", 1] + draw_ms
    round_ms = verify_ms + k * draft_ms
    print(
        f"{rows} rows, 32 tokens in: exact sampler {step_ms:.3f} ms a step (prefill included); "
        f"verifying forward of 1 / {k + 1} positions {timings['policy', 1]:.3f} / {verify_ms:.3f} ms "
        f"({(verify_ms - timings['policy', 1]) / k:.3f} ms a further position); drafter call "
        f"{timings['drafter', 1]:.3f} ms + draw {draw_ms:.3f} ms"
    )
    print(
        f"a round of k={k}, every draft kept: {round_ms:.2f} ms for {k + 1} tokens = {round_ms / (k + 1):.3f} ms a "
        f"token (verifying {verify_ms / (k + 1):.3f}, drafting {k * draft_ms / (k + 1):.3f})"
    )
    print(f"speculative ceiling x exact at this batch: {(k + 1) * step_ms / round_ms:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="model preset with random weights (default tiny)")
    parser.add_argument("--checkpoint", default=None, help="a Hugging Face checkpoint folder instead of a preset")
    parser.add_argument("--registry", default=None, help="a checkpoint registry: its newest version and drafter")
    parser.add_argument("--workload", choices=("mixed", "arithmetic"), default="mixed")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--prompts", type=int, default=8, help="distinct prompts (default 8)")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt; batch = prompts x n (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument(
        "--draft-tokens", type=int, default=4, help="k of speculative sampling, the most a round drafts (default 4)"
    )
    parser.add_argument(
        "--fixed-draft", action="store_true", help="always draft k tokens (default: adapt k to the acceptance rate)"
    )
    parser.add_argument("--paths", default=DEFAULT_PATHS, help=f"comma-separated, of {', '.join(PATHS)}")
    # Five repeats: each run's credited tokens depend on where its samples hit eos, and one pair's ratio
    # ranged 2.7-3.9 within a single run on an idle machine.
    parser.add_argument("--repeats", type=int, default=5, help="rounds over all paths (default 5)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for every path (default 1: tiny ops gain nothing from more)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="128 new tokens, one repeat")
    parser.add_argument("--profile", default=None, choices=PATHS[1:], help="profile one path instead")
    parser.add_argument(
        "--ceiling", action="store_true", help="the most speculative sampling can gain at this batch, from timed parts"
    )
    args = parser.parse_args()
    if args.quick:
        args.max_new_tokens, args.repeats = min(args.max_new_tokens, 128), 1
    if min(args.prompts, args.n, args.max_new_tokens, args.repeats, args.threads, args.draft_tokens) < 1:
        raise ValueError("--prompts, --n, --max-new-tokens, --repeats, --threads and --draft-tokens must be >= 1")
    paths = [p for p in args.paths.split(",") if p]
    if not paths or any(p not in PATHS for p in paths):
        raise ValueError(f"--paths takes a comma-separated list of {', '.join(PATHS)}, got {args.paths!r}")
    torch.set_num_threads(args.threads)

    model, tokenizer, drafter, source = load_models(args)
    prompts = workload_prompts(args.prompts, args.seed, args.workload)
    if args.profile:
        profile_path(args.profile, model, tokenizer, drafter, prompts, args)
        return
    if args.ceiling:
        speculative_ceiling(model, tokenizer, drafter, prompts, args)
        return
    params, draft_params = count_parameters(model), count_parameters(drafter)
    prompt_lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    print(
        f"model: {source}; {params['total'] / 1e6:.2f}M params ({params['active'] / 1e6:.2f}M active), "
        f"drafter {draft_params['total'] / 1e6:.2f}M, {drafter.config.num_hidden_layers} layer(s)"
    )
    print(
        f"batch: {args.prompts} {args.workload} prompts x n={args.n} = {args.prompts * args.n} rows, prompt tokens "
        f"{min(prompt_lengths)}..{max(prompt_lengths)}, max_new_tokens={args.max_new_tokens}, "
        f"temperature {args.temperature}, k={args.draft_tokens}, threads={args.threads}"
    )
    exact = path_policy("exact", model, tokenizer, drafter, args.draft_tokens)
    print(f"greedy parity with generate (16 tokens): {greedy_parity(exact, model, tokenizer, prompts, 16)}")
    speculative = path_policy("+speculative", model, tokenizer, drafter, args.draft_tokens)
    print(
        f"speculative greedy == exact greedy (32 tokens): {greedy_parity(speculative, model, tokenizer, prompts, 32)}"
    )

    policies = {
        p: path_policy(p, model, tokenizer, drafter, args.draft_tokens, not args.fixed_draft)
        for p in paths
        if p != "generate"
    }
    runs: dict[str, list[Run]] = {p: [] for p in paths}
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        order = paths[repeat % len(paths) :] + paths[: repeat % len(paths)]
        for path in order:
            if path == "generate":
                run = run_transformers(model, tokenizer, prompts, args.n, args.max_new_tokens, args.temperature, seed)
            else:
                run = run_policy(policies[path], prompts, args.n, args.max_new_tokens, args.temperature, seed)
            runs[path].append(run)
            accept = f", acceptance {run.accepted / run.proposed:.1%}" if run.proposed else ""
            print(
                f"  repeat {repeat}: {path:13s} {run.tokens} tokens in {run.seconds:.2f}s "
                f"= {run.tokens_per_second:.0f} tok/s ({run.tokens_per_cpu_second:.0f} per CPU-s){accept}",
                flush=True,
            )

    # Ratios by wall time and by the sampling thread's CPU time (one torch thread: all of a path's work runs
    # on it), the latter steadier where other processes share the cores.
    print(
        f"\n{'path':13s} {'tok/s (median)':>15s} {'acceptance':>11s} {'x exact':>8s} {'x generate':>11s}"
        f" {'CPU: x exact':>13s} {'x generate':>11s}"
    )
    for path in paths:
        rate = statistics.median(r.tokens_per_second for r in runs[path])
        proposed = sum(r.proposed for r in runs[path])
        accept = f"{sum(r.accepted for r in runs[path]) / proposed:.1%}" if proposed else "-"
        cells = []
        for clock in ("tokens_per_second", "tokens_per_cpu_second"):
            for base in ("exact", "generate"):
                if base in runs:
                    ratios = [
                        getattr(a, clock) / getattr(b, clock) for a, b in zip(runs[path], runs[base], strict=True)
                    ]
                    cells.append(f"{statistics.median(ratios):.2f}")
                else:
                    cells.append("-")
        print(f"{path:13s} {rate:15.0f} {accept:>11s} {cells[0]:>8s} {cells[1]:>11s} {cells[2]:>13s} {cells[3]:>11s}")


if __name__ == "__main__":
    main()
