"""Token batches of plain corpus documents for pre-training steps and held-out loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TextBatch:
    input_ids: torch.Tensor  # (B, T) right-padded
    attention_mask: torch.Tensor  # (B, T) 1 on real tokens


def encode_texts(tokenizer, texts: list[str], max_seq_len: int) -> TextBatch:
    """<bos> text <eos>, truncated to `max_seq_len` tokens and right-padded to the longest in the batch.

    Documents end with <eos> so the policy learns where a worked solution stops.
    """
    if not texts:
        raise ValueError("encode_texts needs at least one text")
    if max_seq_len < 2:
        raise ValueError(f"max_seq_len must be >= 2, got {max_seq_len}")
    rows = []
    for text in texts:
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(ids[:max_seq_len])
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
    return TextBatch(input_ids=input_ids, attention_mask=attention_mask)
