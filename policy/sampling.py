"""Sampling completions from a local policy: n samples per prompt with token ids, log-probs and version.

`LocalPolicy` drives `FastMoEDecoder` (KV-cached, batched, finished rows dropped from the batch) for
Mixtral-style checkpoints and falls back to `transformers` `generate` for any other causal LM.
Log-probabilities are those of the model's own distribution (temperature 1, no top-p), i.e. what
a training forward pass over the same tokens computes, so they can serve as "old" log-probs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from verifarm.policy.fast_decode import FastMoEDecoder, PromptGroups, split_prompt_cache, unsupported_reason
from verifarm.policy.speculative import draw, nucleus


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


@dataclass(frozen=True)
class SamplingParams:
    """Validated settings of one `sample` call."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {list(self.stop)}")


def choose_tokens(logits: torch.Tensor, temperature: float, top_p: float,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
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


class LocalPolicy:
    """A policy held in this process: `sample` runs the model on its own device."""

    def __init__(self, model: PreTrainedModel, tokenizer, version: int):
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs a pad or eos token to pad prompt batches")
        self.model = model  # left in its mode: a trainer may share it; sampling never uses dropout
        self.tokenizer = tokenizer
        self.version = int(version)
        self._stop_candidates: dict[tuple[str, ...], torch.Tensor] = {}

    @classmethod
    def from_dir(cls, path: str | Path, version: int, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None) -> "LocalPolicy":
        """Load a Hugging Face checkpoint folder (config.json + safetensors + tokenizer files)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} is not a Hugging Face checkpoint folder (no config.json)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        return cls(model, AutoTokenizer.from_pretrained(path), version)

    @property
    def eos_ids(self) -> set[int]:
        ids = self.model.config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [] if ids is None else [ids])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def sample(self, prompts: list[str], n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
               max_new_tokens: int = 256, stop: list[str] | None = None,
               seed: int | None = None) -> list[list[Completion]]:
        """n completions for each prompt (outer list per prompt); temperature 0 is greedy decoding."""
        if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a non-empty list of strings")
        params = SamplingParams(n, temperature, top_p, max_new_tokens, tuple(stop or ()), seed)
        prompt_ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        if any(len(ids) == 0 for ids in prompt_ids):
            raise ValueError("an empty prompt encodes to no tokens with this tokenizer; give it some text")
        if unsupported_reason(self.model) is None:
            rows = self._sample_fast(prompt_ids, params)
        else:
            rows = self._sample_with_generate(prompt_ids, params)
        completions = [self._finish(ids, logprobs, reason, params.stop) for ids, logprobs, reason in rows]
        return [completions[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _finish(self, token_ids: list[int], logprobs: list[float], reason: str,
                stop: tuple[str, ...]) -> Completion:
        eos = self.eos_ids
        text_ids = token_ids[:-1] if token_ids and token_ids[-1] in eos else token_ids
        text, stopped = _cut_at_stop(self.tokenizer.decode(text_ids, skip_special_tokens=True), stop)
        if stopped:
            reason = "stop"
        return Completion(text, token_ids, logprobs, self.version, reason)

    def _left_pad(self, prompt_ids: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for row, ids in enumerate(prompt_ids):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention_mask[row, width - len(ids):] = 1
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

    def _sample_fast(self, prompt_ids: list[list[int]], params: SamplingParams) -> list[tuple[list[int], list[float], str]]:
        decoder = FastMoEDecoder(self.model)
        device = decoder.device
        generator = _make_generator(params.seed, device)
        # Prompts are decoded shortest first (batch rows map back to output rows through row_ids), so
        # that the prompt cache can be cut into a short and a long run without gathering prompts.
        order = sorted(range(len(prompt_ids)), key=lambda p: len(prompt_ids[p]))
        sorted_ids = [prompt_ids[p] for p in order]
        input_ids, attention_mask = self._left_pad(sorted_ids, device)
        prompt_width = input_ids.shape[1]
        total_rows = len(prompt_ids) * params.n

        # Each distinct prompt is prefilled once and its keys are shared by its n samples (see
        # FastMoEDecoder.step); only the generated tokens get a cache per row.
        prompt_cache = decoder.allocate_cache(len(prompt_ids), prompt_width)
        rotary = decoder.rotary_table(prompt_width + params.max_new_tokens)
        logits = decoder.prefill(input_ids, attention_mask, prompt_cache, rotary)
        prompt_segments = split_prompt_cache(prompt_cache, [len(ids) for ids in sorted_ids])
        prompt_of = [row // params.n for row in range(total_rows)]  # sorted prompt of each batch row
        expand = torch.tensor(prompt_of, device=device)
        logits = logits.index_select(0, expand)
        positions = attention_mask.sum(-1).index_select(0, expand)  # next position of each row
        cache = decoder.allocate_cache(total_rows, params.max_new_tokens)
        groups = PromptGroups.from_prompt_of(prompt_of, len(prompt_ids), device)
        row_ids = torch.tensor([order[row // params.n] * params.n + row % params.n for row in range(total_rows)],
                               device=device)  # the output row of each live batch row

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
                    tail = out_tokens[row, max(0, step + 1 - stop_window): step + 1].tolist()
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
                cache, row_ids, tokens, positions = (cache.select_rows(keep), row_ids[keep], tokens[keep],
                                                     positions[keep])
                finished, finished_count = finished[keep], 0
                prompt_of = [prompt_of[i] for i in keep.tolist()]
                groups = PromptGroups.from_prompt_of(prompt_of, len(prompt_ids), device)
            logits = decoder.step(tokens, positions, prompt_segments, groups, cache, step, rotary)
            positions = positions + 1

        token_lists, logprob_lists = out_tokens.cpu().tolist(), out_logprobs.cpu().tolist()
        return [(token_lists[r][: lengths[r]], logprob_lists[r][: lengths[r]], reasons[r]) for r in range(total_rows)]

    def _sample_with_generate(self, prompt_ids: list[list[int]],
                              params: SamplingParams) -> list[tuple[list[int], list[float], str]]:
        """Any other causal LM: `transformers` `generate`, with raw logits kept for the log-probs."""
        device = self.model.device
        # Expand the n samples ourselves: `generate` refuses num_return_sequences > 1 when greedy.
        input_ids, attention_mask = self._left_pad([ids for ids in prompt_ids for _ in range(params.n)], device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        options = dict(max_new_tokens=params.max_new_tokens, pad_token_id=pad,
                       eos_token_id=sorted(self.eos_ids) or None, return_dict_in_generate=True, output_logits=True)
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
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                with torch.inference_mode():
                    output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
        finally:
            self.model.train(was_training)
        generated = output.sequences[:, input_ids.shape[1]:]  # (B*n, T)
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
