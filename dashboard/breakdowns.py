"""Aggregates of one campaign's records for its page, computed in the database (a campaign may hold millions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Integer, case, cast, func, select

from verifarm.rollout.store import RolloutStore


@dataclass(frozen=True)
class EnvDifficultyRow:
    env_id: str
    difficulty: int
    records: int
    passed: int
    failed: int
    infra_errors: int

    @property
    def pass_rate(self) -> float | None:
        scored = self.passed + self.failed
        return self.passed / scored if scored else None


def by_env_and_difficulty(store: RolloutStore, campaign_id: str) -> list[EnvDifficultyRow]:
    c = store.records.c
    statement = (
        select(
            c.env_id,
            c.difficulty,
            func.count(),
            func.sum(case((c.outcome == "pass", 1), else_=0)),
            func.sum(case((c.outcome == "fail", 1), else_=0)),
            func.sum(case((c.outcome == "infra_error", 1), else_=0)),
        )
        .where(c.campaign_id == campaign_id)
        .group_by(c.env_id, c.difficulty)
        .order_by(c.env_id, c.difficulty)
    )
    with store.engine.connect() as conn:
        return [
            EnvDifficultyRow(env, int(d), int(n), int(p or 0), int(f or 0), int(i or 0))
            for env, d, n, p, f, i in conn.execute(statement)
        ]


def failure_reasons(store: RolloutStore, campaign_id: str, limit: int = 15) -> list[tuple[str, str, int]]:
    """The most frequent (outcome, reason) pairs among records that did not pass."""
    c = store.records.c
    statement = (
        select(c.outcome, c.reason, func.count().label("n"))
        .where(c.campaign_id == campaign_id, c.outcome != "pass")
        .group_by(c.outcome, c.reason)
        .order_by(func.count().desc(), c.reason)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [(outcome, reason, int(n)) for outcome, reason, n in conn.execute(statement)]


def throughput(store: RolloutStore, campaign_id: str, buckets: int = 60) -> list[tuple[float, float]]:
    """(minutes since the first record, records per second) over at most `buckets` equal time slices."""
    span = store.time_span(campaign_id)
    if span is None:
        return []
    first, last = span
    seconds = max((last - first).total_seconds(), 1.0)
    width = max(1, int(-(-seconds // buckets)))  # whole seconds per bucket
    c = store.records.c
    if store.dialect == "postgresql":
        epoch = cast(func.extract("epoch", c.created_at), Integer)
    else:
        epoch = cast(func.strftime("%s", c.created_at), Integer)
    start = int(first.replace(tzinfo=timezone.utc).timestamp() if first.tzinfo is None else first.timestamp())
    bucket = (epoch - start) // width
    statement = select(bucket, func.count()).where(c.campaign_id == campaign_id).group_by(bucket).order_by(bucket)
    with store.engine.connect() as conn:
        counts = {int(b or 0): int(n) for b, n in conn.execute(statement)}
    top = max(counts) if counts else 0
    return [(index * width / 60, counts.get(index, 0) / width) for index in range(top + 1)]


def eta_seconds(done: int, expected: int, rate: float | None, running: bool) -> float | None:
    if not running or not rate or done >= expected:
        return None
    return (expected - done) / rate


def age(moment: datetime) -> str:
    seconds = (datetime.now(timezone.utc) - moment).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"
