"""The rollout store: every sampled completion with its provenance, campaigns, and the trainer's metrics.

One database through SQLAlchemy 2: a SQLite file on one machine, PostgreSQL for a farm. Each kind of row is a
module of its own (`records`, `campaigns`, `trainer_metrics`, on the engine of `database`; the deterministic
ids in `ids`); `RolloutStore` is all of them on one engine, which is what the farm's parts open.
"""

from __future__ import annotations

from verifarm.rollout.store.campaigns import CampaignRow, CampaignStore
from verifarm.rollout.store.ids import content_hash_for, group_id_for, record_id_for
from verifarm.rollout.store.records import (
    OUTCOMES,
    Outcome,
    RecordFilter,
    RecordStore,
    RecordSummary,
    RecordWindow,
    RolloutRecord,
)
from verifarm.rollout.store.trainer_metrics import MetricsEntry, MetricsStore


class RolloutStore(RecordStore, CampaignStore, MetricsStore):
    """Records, campaigns and trainer metrics in one database; tables are created on open."""

    def __enter__(self) -> RolloutStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


__all__ = [
    "OUTCOMES",
    "CampaignRow",
    "CampaignStore",
    "MetricsEntry",
    "MetricsStore",
    "Outcome",
    "RecordFilter",
    "RecordStore",
    "RecordSummary",
    "RecordWindow",
    "RolloutRecord",
    "RolloutStore",
    "content_hash_for",
    "group_id_for",
    "record_id_for",
]
