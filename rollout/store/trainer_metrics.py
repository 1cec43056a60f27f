"""The continual trainer's evaluations: one row of named figures per (policy version, step)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    UniqueConstraint,
    select,
)

from verifarm.rollout.store.database import Database, as_utc, utcnow


class MetricsEntry(BaseModel):
    policy_version: int
    step: int
    metrics: dict[str, float]
    created_at: datetime


def metrics_table(metadata: MetaData) -> Table:
    return Table(
        "trainer_metrics",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("policy_version", Integer, nullable=False, index=True),
        Column("step", Integer, nullable=False),
        Column("metrics", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("policy_version", "step", name="uq_trainer_metrics_version_step"),
    )


class MetricsStore(Database):
    """The trainer metrics table (created on open) and its queries."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.metric_rows = metrics_table(self.metadata)
        self.metric_rows.create(self.engine, checkfirst=True)

    def record_metrics(self, policy_version: int, metrics: dict[str, float], step: int) -> None:
        """Store one evaluation; evaluating the same (version, step) again replaces it."""
        if not metrics:
            raise ValueError("metrics must hold at least one name: value")
        clean = {str(k): float(v) for k, v in metrics.items()}
        statement = self._insert(self.metric_rows).values(
            policy_version=int(policy_version), step=int(step), metrics=clean, created_at=utcnow()
        )
        statement = statement.on_conflict_do_update(
            index_elements=["policy_version", "step"],
            set_={"metrics": statement.excluded.metrics, "created_at": statement.excluded.created_at},
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    def metrics(self, policy_version: int | None = None) -> list[MetricsEntry]:
        """Stored evaluations, oldest version and step first; one version's only if given."""
        t = self.metric_rows.c
        statement = select(self.metric_rows)
        if policy_version is not None:
            statement = statement.where(t.policy_version == policy_version)
        statement = statement.order_by(t.policy_version, t.step)
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [
            MetricsEntry(
                policy_version=r["policy_version"],
                step=r["step"],
                metrics=r["metrics"],
                created_at=as_utc(r["created_at"]),
            )
            for r in rows
        ]
