"""Post-training batches read from the rollout store: whole task groups, fresh enough, after the cursor.

Records are read in store order (`seq`) as complete groups (all n samples of one task), so rejection-sampling
fine-tuning, group-relative policy gradient and distillation all consume the same stream and every record is
used or skipped exactly once. The cursor only moves past records that were used or skipped for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from verifarm.rollout.store import RecordFilter
from verifarm.trainer.schedule import DataCursor, is_fresh


@dataclass(frozen=True)
class PostSelection:
    """Which records a post-training source reads: envs, campaign, freshness, how long to wait for a group."""

    env_ids: tuple[str, ...]
    campaign_id: str | None
    staleness_bound: int
    group_wait_seconds: float = 120.0  # a group still missing samples after this long is skipped
    scan_page: int = 512


@dataclass
class PostBatch:
    """Prompt/completion pairs with their rewards and group labels, plus how stale they were."""

    mode: str
    prompts: list[str]
    completions: list[str]
    rewards: list[float]
    group_ids: list[int]  # dense 0..G-1 within the batch, as the losses expect
    policy_versions: list[int]
    staleness: list[int] = field(default_factory=list)  # current version minus each record's version
    # What the sampler recorded per sample (None where it did not): the behaviour log-probs of the
    # off-policy correction (`grpo_loss(behaviour_logprobs=...)`).
    token_ids: list[list[int] | None] = field(default_factory=list)
    logprobs: list[list[float] | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    def staleness_summary(self) -> dict[str, float]:
        if not self.staleness:
            return {}
        return {
            "data_staleness_mean": sum(self.staleness) / len(self.staleness),
            "data_staleness_max": float(max(self.staleness)),
        }


def usable_samples(mode: str, group: list) -> list:
    """The samples of one complete group that a step of `mode` learns from."""
    if mode == "rft":
        # Identical passing completions (common on easy tasks) would weight a task by how easy it is.
        unique: dict[str, object] = {}  # completion -> its first passing record
        for r in group:
            if r.passed:
                unique.setdefault(r.completion, r)
        return list(unique.values())
    if mode == "grpo":
        # A group whose rewards are all equal has zero advantage everywhere: no learning signal.
        rewards = {r.reward for r in group}
        return list(group) if len(rewards) > 1 else []
    if mode == "distill":
        return [r for r in group if r.outcome != "infra_error"]
    raise ValueError(f"unknown post-training mode {mode!r}")


def read_post_batch(
    store,
    cursor: DataCursor,
    mode: str,
    batch_size: int,
    current_version: int,
    selection: PostSelection,
    now: datetime | None = None,
) -> tuple[PostBatch | None, DataCursor]:
    """Fill one batch of at most `batch_size` samples from complete groups after the cursor.

    Returns (None, cursor') when no usable fresh data exists yet; cursor' may still have moved past stale or
    useless records, so they are not scanned again.
    """
    now = now or datetime.now(timezone.utc)
    cursor = DataCursor.from_dict(cursor.to_dict())
    prompts: list[str] = []
    completions: list[str] = []
    rewards: list[float] = []
    group_ids: list[int] = []
    versions: list[int] = []
    staleness: list[int] = []
    sampled_ids: list[list[int] | None] = []
    sampled_logprobs: list[list[float] | None] = []
    scan_from = cursor.store_after_seq
    pending: dict[str, list] = {}  # group id -> records seen so far, in seq order
    order: list[str] = []  # group ids in order of their first record
    store_exhausted = False
    while True:
        if not store_exhausted and (not order or len(pending[order[0]]) < pending[order[0]][0].group_size):
            page = store.query(
                RecordFilter(campaign_id=selection.campaign_id, after_seq=scan_from, limit=selection.scan_page)
            )
            store_exhausted = len(page) < selection.scan_page
            if page:
                scan_from = page[-1].seq
            for record in page:
                if record.group_id not in pending:
                    pending[record.group_id] = []
                    order.append(record.group_id)
                pending[record.group_id].append(record)
        if not order:
            break
        gid = order[0]
        group = pending[gid]
        complete = len(group) >= group[0].group_size
        if not complete:
            if not store_exhausted:
                continue  # the rest of the group may be on the next page
            waited = now - _as_utc(group[-1].created_at)
            if waited < timedelta(seconds=selection.group_wait_seconds):
                break  # still being written: wait for the rest; nothing after it is consumed yet
        take, reason = _classify(group, complete, mode, current_version, selection)
        if take and prompts and len(prompts) + len(take) > batch_size:
            break  # the batch is full: this group stays un-consumed for the next step
        order.pop(0)
        del pending[gid]
        _consume(cursor, group, take, reason)
        if take:
            group_index = (group_ids[-1] + 1) if group_ids else 0
            for r in take:
                prompts.append(r.prompt)
                completions.append(r.completion)
                rewards.append(float(r.reward))
                group_ids.append(group_index)
                versions.append(int(r.policy_version))
                staleness.append(current_version - int(r.policy_version))
                sampled_ids.append(r.token_ids)
                sampled_logprobs.append(r.logprobs)
        if len(prompts) >= batch_size:
            break
    if not prompts:
        return None, cursor
    return PostBatch(
        mode, prompts, completions, rewards, group_ids, versions, staleness, sampled_ids, sampled_logprobs
    ), cursor


def _classify(group, complete, mode, current_version, selection) -> tuple[list, str]:
    """The usable samples of a group and why: "used", "stale" or "other" (wrong env, not ours, incomplete)."""
    first = group[0]
    if not complete or first.env_id not in selection.env_ids or first.policy_version is None:
        return [], "other"
    if not is_fresh(first.policy_version, current_version, selection.staleness_bound):
        return [], "stale"
    take = usable_samples(mode, group)
    return take, "used" if take else "other"


def _consume(cursor: DataCursor, group, take, reason: str) -> None:
    """Count the group and move the cursor past it (a task's samples are stored together, in one insert)."""
    cursor.records_used += len(take)
    if reason == "stale":
        cursor.records_skipped_stale += len(group)
    else:
        cursor.records_skipped_other += len(group) - len(take)
    cursor.store_after_seq = max(cursor.store_after_seq or 0, max(r.seq for r in group))


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
