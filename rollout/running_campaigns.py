"""The campaigns that may still be running, found without counting every campaign's records.

A campaign is done once the store holds all its records, and stays done (records and campaigns are only ever
added). So the finished ones are remembered in their own table the first time a reader finds them done; the
running ones are the campaigns not cancelled and not in it. The reconcile sweep then counts records only for
those, and its cost follows the running campaigns, not the store's size.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite


def _table(metadata: MetaData) -> Table:
    return Table(
        "finished_campaigns",
        metadata,
        Column("campaign_id", String(64), primary_key=True),
        Column("finished_at", DateTime(timezone=True), nullable=False),
    )


class RunningCampaigns:
    """Reads the store's `rollout_campaigns` table beside its own `finished_campaigns` (created on first use)."""

    def __init__(self, engine: Engine, campaigns: Table) -> None:
        self.engine = engine
        self.campaigns = campaigns
        self.finished = _table(MetaData())
        self.finished.create(engine, checkfirst=True)

    def candidates(self, created_before: datetime) -> list[str]:
        """Campaigns created before this time, not cancelled and not known to be done (oldest first)."""
        c, f = self.campaigns.c, self.finished.c
        known_done = select(f.campaign_id).where(f.campaign_id == c.campaign_id).exists()
        statement = (
            select(c.campaign_id)
            .where(c.created_at <= created_before, c.cancelled.is_(False), ~known_done)
            .order_by(c.created_at)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(statement).scalars())

    def mark_done(self, campaign_id: str) -> None:
        """Remember that this campaign holds all its records (a second mark changes nothing)."""
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(self.finished)
            .values(campaign_id=campaign_id, finished_at=datetime.now(timezone.utc))
            .on_conflict_do_nothing(index_elements=["campaign_id"])
        )
        with self.engine.begin() as conn:
            conn.execute(statement)
