"""Campaign rows: a submitted campaign's spec, size and priority, whether it was cancelled, and its count of
retried sandbox failures."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, MetaData, String, Table, select, update
from sqlalchemy.pool import QueuePool

from verifarm.rollout.store.database import Database, as_utc, utcnow


class CampaignRow(BaseModel):
    campaign_id: str
    name: str
    spec: dict[str, Any]
    total_tasks: int
    samples_per_task: int
    priority: int
    cancelled: bool
    infra_retries: int
    created_at: datetime

    @property
    def expected_records(self) -> int:
        return self.total_tasks * self.samples_per_task


def campaigns_table(metadata: MetaData) -> Table:
    return Table(
        "rollout_campaigns",
        metadata,
        Column("campaign_id", String(64), primary_key=True),
        Column("name", String(256), nullable=False),
        Column("spec", JSON, nullable=False),
        Column("total_tasks", Integer, nullable=False),
        Column("samples_per_task", Integer, nullable=False),
        Column("priority", Integer, nullable=False),
        Column("cancelled", Boolean, nullable=False, default=False),
        Column("infra_retries", Integer, nullable=False, default=0),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


class CampaignStore(Database):
    """The campaigns table (created on open) and its queries."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.campaigns = campaigns_table(self.metadata)
        self.campaigns.create(self.engine, checkfirst=True)
        # `campaign_ids` on a SQLite file: a connection of its own, the ids it read, and the file's data version
        # when it read them.
        self._ids_lock = threading.Lock()
        self._ids_connection: Any = None
        self._ids_read: tuple[int, list[str]] | None = None

    def create_campaign(
        self,
        campaign_id: str,
        name: str,
        spec: dict[str, Any],
        total_tasks: int,
        samples_per_task: int,
        priority: int,
    ) -> CampaignRow:
        """Store a new campaign; an id that already exists is refused."""
        if self.get_campaign(campaign_id) is not None:
            raise ValueError(f"campaign {campaign_id!r} already exists; pick another id")
        row = CampaignRow(
            campaign_id=campaign_id,
            name=name,
            spec=spec,
            total_tasks=total_tasks,
            samples_per_task=samples_per_task,
            priority=priority,
            cancelled=False,
            infra_retries=0,
            created_at=utcnow(),
        )
        with self.engine.begin() as conn:
            conn.execute(self.campaigns.insert().values(**row.model_dump()))
        return row

    def get_campaign(self, campaign_id: str) -> CampaignRow | None:
        statement = select(self.campaigns).where(self.campaigns.c.campaign_id == campaign_id)
        with self.engine.connect() as conn:
            row = conn.execute(statement).mappings().first()
        return None if row is None else self._campaign_from_row(row)

    def list_campaigns(self) -> list[CampaignRow]:
        statement = select(self.campaigns).order_by(self.campaigns.c.created_at)
        with self.engine.connect() as conn:
            return [self._campaign_from_row(r) for r in conn.execute(statement).mappings()]

    def campaign_ids(self) -> list[str]:
        """The ids of `list_campaigns`, in its order, without reading (and validating) specs: for menus.

        The dataset browser's menu asks on every page, so this skips SQLAlchemy's statement building, cache lookup
        and result wrapping (3-4 times the query) for the driver's own cursor. On a SQLite file the ids are read
        again only when the file changed: `PRAGMA data_version` on a connection that never writes changes with
        every commit of any other connection (any process), and costs a few microseconds."""
        c = self.campaigns.c
        sql = f"SELECT {c.campaign_id.name} FROM {self.campaigns.name} ORDER BY {c.created_at.name}"
        if self.dialect != "sqlite" or not isinstance(self.engine.pool, QueuePool):
            # PostgreSQL has no such counter; an in-memory SQLite database shares its one connection.
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute(sql)
                return [row[0] for row in cursor.fetchall()]
            finally:
                connection.close()
        with self._ids_lock:
            if self._ids_connection is None:
                self._ids_connection = self.engine.raw_connection()
            cursor = self._ids_connection.cursor()
            try:
                # fetchall: a statement left unfinished would hold its read snapshot (and stall checkpoints).
                version = cursor.execute("PRAGMA data_version").fetchall()[0][0]
                if self._ids_read is None or self._ids_read[0] != version:
                    self._ids_read = version, [row[0] for row in cursor.execute(sql).fetchall()]
            finally:
                cursor.close()
            return list(self._ids_read[1])

    def close(self) -> None:
        with self._ids_lock:
            if self._ids_connection is not None:
                self._ids_connection.close()
                self._ids_connection = None
        super().close()

    @staticmethod
    def _campaign_from_row(row: Any) -> CampaignRow:
        data = dict(row)
        data["created_at"] = as_utc(data["created_at"])
        return CampaignRow.model_validate(data)

    def _require_campaign(self, campaign_id: str) -> None:
        if self.get_campaign(campaign_id) is None:
            raise ValueError(f"no campaign {campaign_id!r} in the store at {self.engine.url!r}")

    def set_cancelled(self, campaign_id: str, cancelled: bool = True) -> None:
        self._require_campaign(campaign_id)
        statement = (
            update(self.campaigns).where(self.campaigns.c.campaign_id == campaign_id).values(cancelled=cancelled)
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    def is_cancelled(self, campaign_id: str) -> bool:
        statement = select(self.campaigns.c.cancelled).where(self.campaigns.c.campaign_id == campaign_id)
        with self.engine.connect() as conn:
            value = conn.execute(statement).scalar_one_or_none()
        if value is None:
            raise ValueError(f"no campaign {campaign_id!r} in the store")
        return bool(value)

    def add_infra_retries(self, campaign_id: str, n: int) -> None:
        """Count sandbox failures that were retried (they are never stored as fails)."""
        if n <= 0:
            return
        c = self.campaigns.c
        statement = update(self.campaigns).where(c.campaign_id == campaign_id).values(infra_retries=c.infra_retries + n)
        with self.engine.begin() as conn:
            conn.execute(statement)
