"""Pure scheduling for the daemon: which kind of step comes next, how stale data may be, where reading resumes.

Everything here is a function of the step number and the saved cursor, so a restarted daemon makes exactly
the choices the killed one would have made.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

PRETRAIN = "pretrain"
POST_MODES = ("rft", "grpo", "distill")


@dataclass(frozen=True)
class ScheduleConfig:
    """`pretrain_steps` pre-training steps for every `posttrain_steps` post-training steps, spread evenly.

    Post-training steps are split among the modes in proportion to `mode_weights` (rft: rejection-sampling
    fine-tuning on passing rollouts, grpo: group-relative policy gradient, distill: from a teacher).
    """

    pretrain_steps: int = 1
    posttrain_steps: int = 3
    mode_weights: dict[str, float] = field(default_factory=lambda: {"rft": 1.0})

    def __post_init__(self) -> None:
        if self.pretrain_steps < 0 or self.posttrain_steps < 0 or self.pretrain_steps + self.posttrain_steps == 0:
            raise ValueError(
                f"need non-negative step counts, not both zero; got pretrain_steps={self.pretrain_steps}, "
                f"posttrain_steps={self.posttrain_steps}"
            )
        unknown = set(self.mode_weights) - set(POST_MODES)
        if unknown:
            raise ValueError(f"unknown post-training modes {sorted(unknown)}; choose from {POST_MODES}")
        if any(w < 0 for w in self.mode_weights.values()):
            raise ValueError(f"mode weights must be >= 0, got {self.mode_weights}")
        if self.posttrain_steps > 0 and sum(self.mode_weights.values()) <= 0:
            raise ValueError("post-training steps are scheduled but every mode weight is zero")


def step_kind(step: int, schedule: ScheduleConfig) -> str:
    """`"pretrain"` or a post-training mode for the 0-based step, spreading pre-training steps evenly."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    cycle = schedule.pretrain_steps + schedule.posttrain_steps
    position = step % cycle
    # Bresenham: the pre-training steps fall where floor((p + 1) * pre / cycle) ticks over.
    if (position + 1) * schedule.pretrain_steps // cycle > position * schedule.pretrain_steps // cycle:
        return PRETRAIN
    post_index = (
        (step // cycle) * schedule.posttrain_steps + position - (position + 1) * schedule.pretrain_steps // cycle
    )
    return _mode_sequence(schedule)[post_index % len(_mode_sequence(schedule))]


def _mode_sequence(schedule: ScheduleConfig) -> tuple[str, ...]:
    """One period of smooth weighted round robin over the modes (weights rounded to percent)."""
    weights = {m: round(100 * w / sum(schedule.mode_weights.values())) for m, w in schedule.mode_weights.items()}
    weights = {m: w for m, w in sorted(weights.items()) if w > 0}
    total = sum(weights.values())
    current = dict.fromkeys(weights, 0)
    sequence = []
    for _ in range(total):
        for mode, weight in weights.items():
            current[mode] += weight
        chosen = max(current, key=lambda m: (current[m], m))
        current[chosen] -= total
        sequence.append(chosen)
    return tuple(sequence)


def oldest_fresh_version(current_version: int, staleness_bound: int) -> int:
    """Records produced by a policy older than this are stale and skipped."""
    if staleness_bound < 0:
        raise ValueError(f"staleness_bound must be >= 0, got {staleness_bound}")
    return max(0, current_version - staleness_bound)


def is_fresh(record_version: int, current_version: int, staleness_bound: int) -> bool:
    return record_version >= oldest_fresh_version(current_version, staleness_bound)


@dataclass
class DataCursor:
    """Where reading resumes: a position in the shuffled corpus and the last store record consumed.

    Saved with every published version; restoring it makes a restarted daemon read exactly the data the
    killed one would have read next, neither repeating nor skipping any.
    """

    corpus_epoch: int = 0
    corpus_offset: int = 0
    store_after_seq: int | None = None  # the store's insertion-order cursor (RolloutRecord.seq)
    records_used: int = 0
    records_skipped_stale: int = 0
    records_skipped_other: int = 0  # failing records an RFT step cannot learn from, incomplete groups, ...

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DataCursor:
        return cls(**data)


def corpus_order(corpus_size: int, epoch: int, seed: int) -> list[int]:
    """The shuffled order of documents in one epoch, fixed by (seed, epoch)."""
    order = list(range(corpus_size))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def next_corpus_indices(
    cursor: DataCursor, corpus_size: int, batch_size: int, seed: int
) -> tuple[list[int], DataCursor]:
    """The next `batch_size` document indices and the cursor after them, wrapping into a new epoch."""
    if corpus_size <= 0:
        raise ValueError("the corpus is empty")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    epoch, offset = cursor.corpus_epoch, cursor.corpus_offset
    indices: list[int] = []
    order = corpus_order(corpus_size, epoch, seed)
    while len(indices) < batch_size:
        if offset >= corpus_size:
            epoch, offset = epoch + 1, 0
            order = corpus_order(corpus_size, epoch, seed)
        take = min(batch_size - len(indices), corpus_size - offset)
        indices.extend(order[offset : offset + take])
        offset += take
    if offset >= corpus_size:  # normalise, so a finished epoch is saved as the start of the next
        epoch, offset = epoch + 1, 0
    updated = DataCursor(**{**cursor.to_dict(), "corpus_epoch": epoch, "corpus_offset": offset})
    return indices, updated
