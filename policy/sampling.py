"""Sampling completions from a local policy: n samples per prompt with token ids, log-probs and version.

`LocalPolicy` drives `FastMoEDecoder` (KV-cached, batched, finished rows dropped from the batch) for
Mixtral-style checkpoints and falls back to `transformers` `generate` for any other causal LM.
Log-probabilities are those of the model's own distribution (temperature 1, no top-p), i.e. what
a training forward pass over the same tokens computes, so they can serve as "old" log-probs. With a
drafter the fast path samples speculatively (`policy.speculative`): same distribution, the policy's own
log-probs, fewer policy forwards. With int8 weights or a bfloat16 cache they are the low-precision model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationMixin, PreTrainedModel

from verifarm.policy.fast_decode import (
    DecoderOptions,
    FastMoEDecoder,
    KVCache,
    PromptGroups,
    PromptSegment,
    split_prompt_cache,
    unsupported_reason,
)
from verifarm.policy.params import SamplingParams
from verifarm.policy.positions import COUPLED, coupled_position_ids, next_coupled_ids, position_scheme
from verifarm.policy.speculative import DraftLength, accept_drafts, draw, nucleus, sampling_distribution


@dataclass
class Completion:
    """One sampled continuation of a prompt.

    `token_ids`/`logprobs` cover every generated token, including an ending eos and the tokens of a
    matched stop string; `text` is the decoded continuation without eos and cut before the stop string.
    `finish_reason` is "stop" (eos or a stop string) or "length" (max_new_tokens reached).
    """

    text: str
    token_ids: list[int]
    logprobs: list[float]
    policy_version: int
    finish_reason: str = "length"
    # Speculative sampling: draft tokens proposed for this row and how many of them were kept. The tokens
    # and log-probs are the policy's all the same (log-probs of the policy, never of the drafter).
    draft_proposed: int = 0
    draft_accepted: int = 0

    @property
    def drafted(self) -> bool:
        """Whether a drafter proposed tokens for this completion (speculative sampling)."""
        return self.draft_proposed > 0


def choose_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row of logits (B, V); return (tokens (B,), their model log-probs (B,))."""
    logits = logits.float()
    model_logprobs = torch.log_softmax(logits, dim=-1)
    if temperature == 0:
        tokens = logits.argmax(dim=-1)
    else:
        # At temperature 1 the sampling distribution is the model's own: reuse its log-softmax.
        probs = model_logprobs.exp() if temperature == 1 else torch.softmax(logits / temperature, dim=-1)
        tokens = draw(nucleus(probs, top_p), generator)
    return tokens, model_logprobs.gather(-1, tokens[:, None]).squeeze(-1)


def _make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()  # fresh entropy: the caller asked for unseeded sampling
    else:
        generator.manual_seed(seed)
    return generator


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    cuts = [index for index in (text.find(s) for s in stop) if index >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


@dataclass(frozen=True)
class _PromptLayout:
    """Prompts sorted by length and left-padded, and the batch rows sampling them."""

    input_ids: torch.Tensor  # (P, W) sorted prompts, left-padded
    attention_mask: torch.Tensor  # (P, W)
    lengths: list[int]  # of each sorted prompt
    prompt_of: list[int]  # sorted prompt of each batch row
    row_ids: torch.Tensor  # (B,) output row of each batch row


class SamplesByKeyword:
    """`sample(prompts, n, temperature=..., ...)`, the keyword form people call by hand, for a policy that
    implements `sample_with` (the form campaigns and the server use, settings validated once)."""

    def sample_with(
        self, prompts: list[str], params: SamplingParams, n: int = 1, seed: int | None = None
    ) -> list[list[Completion]]:
        raise NotImplementedError

    def sample(
        self,
        prompts: list[str],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """n completions for each prompt (outer list per prompt); temperature 0 is greedy decoding."""
        params = SamplingParams.checked(
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, stop=tuple(stop or ())
        )
        return self.sample_with(prompts, params, n, seed)


class LocalPolicy(SamplesByKeyword):
    """A policy held in this process: `sample` runs the model on its own device.

    With a `drafter` (a small Mixtral-style model of the same tokenizer, see `policy.drafter`) the fast
    decoder samples speculatively, up to `draft_tokens` proposals per round (with `adaptive_draft`, as many as
    the drafter's acceptance so far makes worth it, see `speculative.DraftLength`; else always that many), with
    the very same output distribution; without one, or for models the fast decoder does not run, it samples token by token.
    `decoder_options` select int8 weights and a bfloat16 KV cache for the policy (not exact: the
    log-probs recorded are then those of the low-precision model, which the trainer corrects for).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer,
        version: int,
        drafter: PreTrainedModel | None = None,
        draft_tokens: int = 4,
        decoder_options: DecoderOptions = DecoderOptions(),
        adaptive_draft: bool = True,
    ):
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs a pad or eos token to pad prompt batches")
        if drafter is not None:
            reason = unsupported_reason(drafter)
            if reason is not None:
                raise ValueError(f"the drafter cannot run in the fast decoder: {reason}")
            if drafter.config.vocab_size != model.config.vocab_size:
                raise ValueError(
                    f"the drafter's vocabulary ({drafter.config.vocab_size}) differs from the "
                    f"policy's ({model.config.vocab_size}); distill a drafter for this tokenizer"
                )
        if not 1 <= draft_tokens <= 16:
            raise ValueError(f"draft_tokens must be in [1, 16], got {draft_tokens}")
        if drafter is not None and position_scheme(model.config) == COUPLED:
            # Drafted tokens' coupled ids depend on the drafts themselves; speculative rounds count positions.
            raise ValueError("speculative sampling runs rope and nope policies; this policy has coupled positions")
        self.model = model  # left in its mode: a trainer may share it; sampling never uses dropout
        self.tokenizer = tokenizer
        self.version = int(version)
        self.drafter = drafter
        self.draft_tokens = draft_tokens
        self.adaptive_draft = adaptive_draft
        self.decoder_options = decoder_options
        self._stop_candidates: dict[tuple[str, ...], torch.Tensor] = {}

    @classmethod
    def from_dir(
        cls, path: str | Path, version: int, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> LocalPolicy:
        """Load a Hugging Face checkpoint folder (config.json + safetensors + tokenizer files)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} is not a Hugging Face checkpoint folder (no config.json)")
        # transformers wraps Module.to in functools.wraps, whose type loses the binding to self
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()  # type: ignore[arg-type]
        return cls(model, AutoTokenizer.from_pretrained(path), version)

    @property
    def eos_ids(self) -> set[int]:
        ids = self.model.config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [] if ids is None else [ids])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def sample_with(
        self, prompts: list[str], params: SamplingParams, n: int = 1, seed: int | None = None
    ) -> list[list[Completion]]:
        """`sample` with its settings already validated (a campaign's, a server request's)."""
        if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a non-empty list of strings")
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        prompt_ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        if any(len(ids) == 0 for ids in prompt_ids):
            raise ValueError("an empty prompt encodes to no tokens with this tokenizer; give it some text")
        # (token ids, logprobs, finish reason[, drafts accepted and proposed]) per completion
        rows: Sequence[tuple[list[int], list[float], str] | tuple[list[int], list[float], str, tuple[int, int]]]
        if unsupported_reason(self.model) is not None:
            rows = self._sample_with_generate(prompt_ids, params, n, seed)
        elif self.drafter is not None:
            rows = self._sample_speculative(prompt_ids, params, n, seed)
        else:
            rows = self._sample_fast(prompt_ids, params, n, seed)
        completions = [self._finish(*row, stop=params.stop) for row in rows]
        return [completions[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _finish(
        self,
        token_ids: list[int],
        logprobs: list[float],
        reason: str,
        drafts: tuple[int, int] = (0, 0),
        *,
        stop: tuple[str, ...],
    ) -> Completion:
        eos = self.eos_ids
        text_ids = token_ids[:-1] if token_ids and token_ids[-1] in eos else token_ids
        text, stopped = _cut_at_stop(self.tokenizer.decode(text_ids, skip_special_tokens=True), stop)
        if stopped:
            reason = "stop"
        return Completion(text, token_ids, logprobs, self.version, reason, *drafts)

    def _left_pad(self, prompt_ids: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for row, ids in enumerate(prompt_ids):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        return input_ids.to(device), attention_mask.to(device)

    def _stop_candidate_tokens(self, stop: tuple[str, ...], device: torch.device) -> torch.Tensor:
        """Per vocabulary id: may this token complete a stop string? Other tokens skip the text check."""
        if stop not in self._stop_candidates:
            vocab = len(self.tokenizer)
            pieces = self.tokenizer.batch_decode([[i] for i in range(vocab)], skip_special_tokens=False)
            last_chars = {s[-1] for s in stop}
            # A token decoding to U+FFFD is a partial UTF-8 byte: it may complete any stop string.
            flags = [any(c in piece for c in last_chars) or "\ufffd" in piece for piece in pieces]
            size = max(vocab, self.model.config.vocab_size)
            self._stop_candidates[stop] = torch.tensor(flags + [False] * (size - vocab), device=device)
        return self._stop_candidates[stop]

    def _prompt_layout(self, prompt_ids: list[list[int]], n: int, device: torch.device) -> _PromptLayout:
        # Prompts are decoded shortest first (batch rows map back to output rows through row_ids), so
        # that the prompt cache can be cut into a short and a long run without gathering prompts.
        order = sorted(range(len(prompt_ids)), key=lambda p: len(prompt_ids[p]))
        sorted_ids = [prompt_ids[p] for p in order]
        input_ids, attention_mask = self._left_pad(sorted_ids, device)
        total_rows = len(prompt_ids) * n
        prompt_of = [row // n for row in range(total_rows)]  # sorted prompt of each batch row
        row_ids = torch.tensor(
            [order[row // n] * n + row % n for row in range(total_rows)], device=device
        )  # the output row of each live batch row
        return _PromptLayout(input_ids, attention_mask, [len(ids) for ids in sorted_ids], prompt_of, row_ids)

    def _sample_fast(
        self, prompt_ids: list[list[int]], params: SamplingParams, n: int, seed: int | None
    ) -> list[tuple[list[int], list[float], str]]:
        decoder = FastMoEDecoder(self.model, self.decoder_options)
        device = decoder.device
        generator = _make_generator(seed, device)
        layout = self._prompt_layout(prompt_ids, n, device)
        input_ids, attention_mask, prompt_of, row_ids = (
            layout.input_ids,
            layout.attention_mask,
            layout.prompt_of,
            layout.row_ids,
        )
        prompt_width = input_ids.shape[1]
        total_rows = len(prompt_of)

        # Each distinct prompt is prefilled once. Long prompts' keys are shared by its n samples (the cascade of
        # FastMoEDecoder.step) and only the generated tokens get a cache per row; short ones are copied into each
        # row's cache, where one attention a layer costs less than the cascade's two and their merge.
        prompt_cache = decoder.allocate_cache(len(prompt_ids), prompt_width)
        rotary = decoder.rotary_table(prompt_width + params.max_new_tokens)
        # Coupled positions number tokens by their place in a run of digits or of other tokens (ids never
        # exceed the length); each next id follows from the previous token and its id.
        coupled = position_scheme(self.model.config) == COUPLED
        prompt_positions = coupled_position_ids(input_ids, attention_mask) if coupled else None
        logits = decoder.prefill(input_ids, attention_mask, prompt_cache, rotary, prompt_positions)
        expand = torch.tensor(prompt_of, device=device)
        # Short prompts go into each row's cache (one attention a layer); longer ones are attended once per
        # prompt for all its rows (the cascade), from segments trimmed to their lengths.
        if decoder.rows_hold_prompts(prompt_width):
            cache = prompt_cache.prompts_per_row(expand, params.max_new_tokens)
            prompt_segments, prompt_bias, first_slot = [], cache.prompt_bias(prompt_width), prompt_width
        else:
            cache = decoder.allocate_cache(total_rows, params.max_new_tokens)
            prompt_segments, prompt_bias, first_slot = split_prompt_cache(prompt_cache, layout.lengths), None, 0
        logits = logits.index_select(0, expand)
        previous = input_ids[:, -1].index_select(0, expand)  # each row's last token (coupled ids follow it)
        if prompt_positions is not None:
            positions = prompt_positions[:, -1].index_select(0, expand)
        else:
            positions = attention_mask.sum(-1).index_select(0, expand)  # next position of each row
        groups = PromptGroups.from_prompt_of(prompt_of, len(prompt_ids), device)

        out_tokens = torch.zeros(total_rows, params.max_new_tokens, dtype=torch.long, device=device)
        out_logprobs = torch.zeros(total_rows, params.max_new_tokens, dtype=torch.float32, device=device)
        lengths = torch.full((total_rows,), params.max_new_tokens, dtype=torch.long)
        reasons = ["length"] * total_rows
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=device)
        stop_candidates = self._stop_candidate_tokens(params.stop, device) if params.stop else None
        stop_window = 4 * max((len(s) for s in params.stop), default=0) + 4

        finished = torch.zeros(total_rows, dtype=torch.bool, device=device)  # per live batch row
        finished_count = 0
        for step in range(params.max_new_tokens):
            tokens, logprobs = choose_tokens(logits, params.temperature, params.top_p, generator)
            out_tokens[row_ids, step] = tokens
            out_logprobs[row_ids, step] = logprobs
            newly_done = torch.isin(tokens, eos) & ~finished
            if stop_candidates is not None:
                for batch_row in (stop_candidates[tokens] & ~finished).nonzero().flatten().tolist():
                    row = int(row_ids[batch_row])
                    tail = out_tokens[row, max(0, step + 1 - stop_window) : step + 1].tolist()
                    if any(s in self.tokenizer.decode(tail, skip_special_tokens=True) for s in params.stop):
                        newly_done[batch_row] = True
            # One host sync per step: the rows that just ended (their count also gives the live count).
            done_rows = newly_done.nonzero().flatten().tolist()
            if done_rows:
                for row in row_ids[done_rows].tolist():
                    lengths[row], reasons[row] = step + 1, "stop"
                finished |= newly_done
                finished_count += len(done_rows)
            live_count = len(row_ids) - finished_count
            if step + 1 == params.max_new_tokens or live_count == 0:
                break
            if live_count <= 0.75 * len(row_ids):
                live = ~finished
                # Drop finished rows (one cache copy) once a quarter of the batch is done: they stop
                # costing work. Until then they ride along and their extra tokens are discarded.
                keep = live.nonzero().flatten()
                cache, row_ids, tokens, positions, previous = (
                    cache.select_rows(keep),
                    row_ids[keep],
                    tokens[keep],
                    positions[keep],
                    previous[keep],
                )
                finished, finished_count = finished[keep], 0
                prompt_of = [prompt_of[i] for i in keep.tolist()]
                groups = PromptGroups.from_prompt_of(prompt_of, len(prompt_ids), device)
                if prompt_bias is not None:
                    prompt_bias = prompt_bias[keep]
            if coupled:
                positions = next_coupled_ids(tokens, previous, positions)
            logits = decoder.step(
                tokens, positions, prompt_segments, groups, cache, first_slot + step, rotary, prompt_bias
            )
            previous = tokens
            if not coupled:
                positions = positions + 1

        token_lists, logprob_lists = out_tokens.cpu().tolist(), out_logprobs.cpu().tolist()
        return [(token_lists[r][: lengths[r]], logprob_lists[r][: lengths[r]], reasons[r]) for r in range(total_rows)]

    def _sample_speculative(
        self, prompt_ids: list[list[int]], params: SamplingParams, n: int, seed: int | None
    ) -> list[tuple[list[int], list[float], str, tuple[int, int]]]:
        """`_sample_fast` with a drafter: per round the drafter proposes k tokens per row, one forward of the
        policy over the k+1 positions scores them, and `accept_drafts` keeps a prefix of each row's drafts
        plus one token of the policy's own. Rows keep different numbers and sit at different cache slots;
        both caches are rolled back on rejection by starting the row's next round at its committed length.

        Invariant per live row with g committed generated tokens: the policy's cache holds the first g-1 of
        them (the last is the next round's first input), the drafter's at least the first g-2.
        """
        # The drafter runs exact: its precision cannot change the output, only how often it is right.
        if self.drafter is None:
            raise ValueError("speculative sampling needs a drafter")
        decoder, drafter = FastMoEDecoder(self.model, self.decoder_options), FastMoEDecoder(self.drafter)
        device, max_k = decoder.device, self.draft_tokens
        draft_length = DraftLength(max_k) if self.adaptive_draft else None
        k = max_k
        generator = _make_generator(seed, device)
        layout = self._prompt_layout(prompt_ids, n, device)
        prompt_of, row_ids = layout.prompt_of, layout.row_ids
        total_rows, prompt_width = len(prompt_of), layout.input_ids.shape[1]
        slots = params.max_new_tokens + max_k  # a live row has g <= max_new_tokens - 1 and writes k+1 past g-1
        rotary = decoder.rotary_table(prompt_width + slots)
        draft_rotary = drafter.rotary_table(prompt_width + slots)
        prompt_cache = decoder.allocate_cache(len(prompt_ids), prompt_width)
        first_logits = decoder.prefill(layout.input_ids, layout.attention_mask, prompt_cache, rotary)
        expand = torch.tensor(prompt_of, device=device)
        prompt_lengths = layout.attention_mask.sum(-1).index_select(0, expand)  # (B,) position of token 0
        # As in `_sample_fast`: short prompts in each row's cache, generated slots after them; else the cascade,
        # for the policy and the drafter alike (a one-layer drafter's call is mostly op overhead, and one
        # attention instead of the cascade's two and their merge makes a draft token about a quarter cheaper).
        draft_prompts = drafter.allocate_cache(len(prompt_ids), prompt_width)
        drafter.prefill(layout.input_ids, layout.attention_mask, draft_prompts, draft_rotary)
        caches: list[tuple[KVCache, list[PromptSegment], int]] = []
        for model_decoder, prompts_cache in ((decoder, prompt_cache), (drafter, draft_prompts)):
            if model_decoder.rows_hold_prompts(prompt_width):
                caches.append((prompts_cache.prompts_per_row(expand, slots), [], prompt_width))
            else:
                parts = split_prompt_cache(prompts_cache, layout.lengths)
                caches.append((model_decoder.allocate_cache(total_rows, slots), parts, 0))
        (cache, segments, first_slot), (draft_cache, draft_segments, draft_first_slot) = caches
        groups = PromptGroups.from_prompt_of(prompt_of, len(prompt_ids), device)

        # One row more than the batch: the scratch row finished rows write to while they ride along.
        out_tokens = torch.zeros(total_rows + 1, slots + 1, dtype=torch.long, device=device)
        out_logprobs = torch.zeros(total_rows + 1, slots + 1, dtype=torch.float32, device=device)
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=device)
        stop_candidates = self._stop_candidate_tokens(params.stop, device) if params.stop else None
        stop_window = 4 * max((len(s) for s in params.stop), default=0) + 4
        lengths = [params.max_new_tokens] * total_rows
        reasons = ["length"] * total_rows
        # Drafts proposed and kept per output row (and the scratch row).
        proposed = torch.zeros(total_rows + 1, dtype=torch.long, device=device)
        drafts_kept = torch.zeros(total_rows + 1, dtype=torch.long, device=device)

        # Token 0 of every row comes from the prompt's logits, as in plain sampling.
        emitted, logprobs = choose_tokens(
            first_logits.index_select(0, expand), params.temperature, params.top_p, generator
        )
        emitted, logprobs, counts = emitted[:, None], logprobs[:, None], torch.ones(total_rows, dtype=torch.long)
        committed = torch.zeros(total_rows, dtype=torch.long, device=device)  # g per batch row
        finished = torch.zeros(total_rows, dtype=torch.bool)
        # A finished row rides along until a quarter of the batch is done, as in `_sample_fast` (dropping rows
        # copies both caches): its count stays 0, so it never moves, and its output goes to a scratch row.
        scratch_row = total_rows
        finished_count = 0
        accepted = None
        while True:
            # Write this round's tokens, then cut each row at eos, a stop string or the token budget.
            columns = committed[:, None] + torch.arange(emitted.shape[1], device=device)
            out_tokens[row_ids[:, None], columns] = emitted
            out_logprobs[row_ids[:, None], columns] = logprobs
            ends = self._round_ends(
                emitted, counts, committed, eos, stop_candidates, stop_window, row_ids, out_tokens, params
            )
            round_kept = round_rejected = 0
            if accepted is not None:
                # Riding finished rows count toward the scratch row; rows ending this round are corrected below.
                proposed.index_add_(0, row_ids, torch.full_like(accepted, k))
                drafts_kept.index_add_(0, row_ids, accepted)
                live_now = ~finished.to(device)
                round_kept = int(accepted[live_now].sum())
                round_rejected = int((accepted[live_now] < k).sum())
            for batch_row, (count, reason) in ends.items():
                if finished[batch_row]:
                    continue
                row = int(row_ids[batch_row])
                if accepted is not None:
                    # Only the drafts up to the row's end count: a cut at eos or the budget is no rejection, and
                    # drafts after it were neither used nor wrong (else the draft length shrinks as rows end).
                    row_kept = int(accepted[batch_row])
                    proposed[row] -= k - min(k, count)
                    drafts_kept[row] -= row_kept - min(row_kept, count)
                    round_kept -= row_kept - min(row_kept, count)
                    round_rejected -= int(row_kept < k and count <= row_kept)
                lengths[row], reasons[row] = int(committed[batch_row]) + count, reason
                finished[batch_row] = True
                finished_count += 1
            live_count = len(row_ids) - finished_count
            if live_count == 0:
                break
            counts = counts.masked_fill(finished, 0)
            committed = committed + counts.to(device)
            row_ids = row_ids.masked_fill(finished.to(device), scratch_row)
            if live_count <= 0.75 * len(row_ids):
                live = (~finished).nonzero().flatten().to(device)
                cache, draft_cache = cache.select_rows(live), draft_cache.select_rows(live)
                row_ids, committed, prompt_lengths = row_ids[live], committed[live], prompt_lengths[live]
                prompt_of = [prompt_of[i] for i in live.tolist()]
                groups = PromptGroups.from_prompt_of(prompt_of, len(prompt_ids), device)
                finished, finished_count = finished[live.cpu()], 0

            if draft_length is not None:
                if accepted is not None:
                    draft_length.observe(round_kept, round_rejected)
                k = draft_length.next()
            # The drafter catches up on the last two committed tokens (one in the first round) and drafts; its
            # calls of this round read views of one plan of the round's places.
            last = out_tokens[row_ids[:, None], committed[:, None] - 1]  # (B, 1)
            # (Riding finished rows do not count: they may sit at g = 1 while every live row needs two.)
            feed = min(2, int(committed[~finished.to(device)].min()))
            start = (committed - feed).clamp(min=0)
            inputs = out_tokens[row_ids[:, None], start[:, None] + torch.arange(feed, device=device)]
            plan = drafter.plan_extend(
                prompt_lengths + start,
                draft_first_slot + start,
                feed + k - 1,
                draft_cache,
                prompt_width - prompt_lengths if draft_first_slot else None,
                draft_rotary,
            )
            draft_logits = drafter.extend(
                inputs, None, None, draft_segments, groups, draft_cache, draft_rotary, plan=plan.window(0, feed)
            )[:, -1]
            draft_tokens, draft_probs = [], []
            for index in range(k):
                probs = sampling_distribution(draft_logits, params.temperature, params.top_p)
                draft_tokens.append(draw(probs, generator))
                draft_probs.append(probs)
                if index + 1 < k:
                    draft_logits = drafter.extend(
                        draft_tokens[-1][:, None],
                        None,
                        None,
                        draft_segments,
                        groups,
                        draft_cache,
                        draft_rotary,
                        plan=plan.window(feed + index),
                    )[:, 0]
            drafts = torch.stack(draft_tokens, dim=1)  # (B, k)

            # One policy forward over the last committed token and the k drafts: k+1 distributions.
            start = committed - 1
            verify_plan = decoder.plan_extend(
                prompt_lengths + start,
                first_slot + start,
                k + 1,
                cache,
                prompt_width - prompt_lengths if first_slot else None,
            )
            target_logits = decoder.extend(
                torch.cat((last, drafts), dim=1), None, None, segments, groups, cache, rotary, plan=verify_plan
            )  # (B, k+1, V)
            verdict = accept_drafts(
                drafts,
                torch.stack(draft_probs, dim=1),
                sampling_distribution(target_logits, params.temperature, params.top_p),
                generator,
                normalized=params.top_p >= 1.0,
            )
            accepted = verdict.accepted
            emitted = torch.cat((drafts, drafts[:, :1]), dim=1).scatter_(
                1, accepted[:, None], verdict.next_tokens[:, None]
            )
            # The policy's own log-probs of what it emits (temperature 1, no top-p), never the drafter's.
            logprobs = torch.log_softmax(target_logits.float(), dim=-1).gather(-1, emitted[..., None]).squeeze(-1)
            counts = (accepted + 1).cpu()

        token_lists, logprob_lists = out_tokens.cpu().tolist(), out_logprobs.cpu().tolist()
        proposed_list, kept_list = proposed.tolist(), drafts_kept.tolist()
        return [
            (token_lists[r][: lengths[r]], logprob_lists[r][: lengths[r]], reasons[r], (proposed_list[r], kept_list[r]))
            for r in range(total_rows)
        ]

    def _round_ends(
        self,
        emitted: torch.Tensor,
        counts: torch.Tensor,
        committed: torch.Tensor,
        eos: torch.Tensor,
        stop_candidates: torch.Tensor | None,
        stop_window: int,
        row_ids: torch.Tensor,
        out_tokens: torch.Tensor,
        params: SamplingParams,
    ) -> dict[int, tuple[int, str]]:
        """The batch rows that end this round, each with how many of its `counts` new tokens `emitted` (B, C)
        it keeps and why it ends: "stop" at eos or a stop string, "length" at the budget. The other rows keep
        all their new tokens; only rows with an end in sight are looked at one by one."""
        columns = torch.arange(emitted.shape[1], device=emitted.device)
        counts = counts.to(emitted.device)
        usable = columns < counts[:, None]
        ends_at = torch.isin(emitted, eos) & usable
        if stop_candidates is not None:
            ends_at |= stop_candidates[emitted] & usable
        budget = params.max_new_tokens - committed
        flagged = ends_at.any(-1)
        candidates = (flagged | (counts >= budget)).nonzero().flatten().tolist()
        if not candidates:
            return {}
        flagged_list, first = flagged.cpu().tolist(), ends_at.float().argmax(-1).cpu().tolist()
        committed_list, count_list = committed.cpu().tolist(), counts.cpu().tolist()
        emitted_rows = emitted.cpu().tolist()
        eos_ids = self.eos_ids
        results: dict[int, tuple[int, str]] = {}
        for batch_row in candidates:
            g, count = committed_list[batch_row], count_list[batch_row]
            row_budget = params.max_new_tokens - g
            if flagged_list[batch_row]:
                row = int(row_ids[batch_row])
                for column in range(first[batch_row], min(count, row_budget)):
                    token = emitted_rows[batch_row][column]
                    if token in eos_ids:
                        results[batch_row] = (column + 1, "stop")
                        break
                    if stop_candidates is not None and bool(stop_candidates[token]):
                        tail = out_tokens[row, max(0, g + column + 1 - stop_window) : g + column + 1].tolist()
                        if any(s in self.tokenizer.decode(tail, skip_special_tokens=True) for s in params.stop):
                            results[batch_row] = (column + 1, "stop")
                            break
            if batch_row not in results and count >= row_budget:
                results[batch_row] = (row_budget, "length")
        return results

    def _sample_with_generate(
        self, prompt_ids: list[list[int]], params: SamplingParams, n: int, seed: int | None
    ) -> list[tuple[list[int], list[float], str]]:
        """Any other causal LM: `transformers` `generate`, with raw logits kept for the log-probs."""
        model = self.model
        if not isinstance(model, GenerationMixin):
            raise ValueError(f"{type(model).__name__} does not generate text; load a causal LM (AutoModelForCausalLM)")
        device = model.device
        # Expand the n samples ourselves: `generate` refuses num_return_sequences > 1 when greedy.
        input_ids, attention_mask = self._left_pad([ids for ids in prompt_ids for _ in range(n)], device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        options = dict(
            max_new_tokens=params.max_new_tokens,
            pad_token_id=pad,
            eos_token_id=sorted(self.eos_ids) or None,
            return_dict_in_generate=True,
            output_logits=True,
        )
        if params.temperature == 0:
            options.update(do_sample=False)
        else:
            options.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.stop:
            options.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        was_training = self.model.training
        self.model.eval()  # no dropout while sampling; the caller's mode is restored below
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                if seed is not None:
                    torch.manual_seed(seed)
                with torch.inference_mode():
                    output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
        finally:
            self.model.train(was_training)
        generated = output.sequences[:, input_ids.shape[1] :]  # (B*n, T)
        logprobs = torch.log_softmax(torch.stack(output.logits, dim=1).float(), dim=-1)  # (B*n, T, V)
        chosen = logprobs.gather(-1, generated[..., None]).squeeze(-1)
        eos = self.eos_ids
        rows = []
        for ids, lps in zip(generated.tolist(), chosen.tolist()):
            end = next((i + 1 for i, t in enumerate(ids) if t in eos), None)
            if end is None and params.stop:
                text_so_far = ""
                for i in range(len(ids)):
                    text_so_far = self.tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
                    if any(s in text_so_far for s in params.stop):
                        end = i + 1
                        break
            reason = "stop" if end is not None else "length"
            end = end if end is not None else len(ids)
            rows.append((ids[:end], lps[:end], reason))
        return rows
