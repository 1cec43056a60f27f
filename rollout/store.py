"""The rollout store: every sampled completion with its provenance, campaigns, and the trainer's metrics.

One interface over SQLAlchemy 2: a SQLite file on one machine, PostgreSQL for a farm. Inserts are
idempotent on the deterministic record id, so a redelivered Celery task never duplicates a row.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from verifarm.redaction import redact_url

Outcome = Literal["pass", "fail", "infra_error"]
OUTCOMES: tuple[str, ...] = ("pass", "fail", "infra_error")

# Any fixed 64-bit number: the PostgreSQL advisory lock that orders record inserts.
_INSERT_LOCK_KEY = 0x7665726966726D31

# A fixed namespace: record ids must be the same on every machine and every run.
_RECORD_NAMESPACE = uuid.UUID("6f1d3c1e-9a43-5b8e-8d5e-0c6a1f2b7e10")


def record_id_for(campaign_id: str, task_index: int, sample_index: int) -> str:
    """The id of sample `sample_index` of task `task_index`: a retried task recomputes the same one."""
    return str(uuid.uuid5(_RECORD_NAMESPACE, f"{campaign_id}/{task_index}/{sample_index}"))


def group_id_for(campaign_id: str, task_index: int) -> str:
    """All n samples of one task share this id (what group-relative training normalises over)."""
    return f"{campaign_id}/{task_index}"


def content_hash_for(env_id: str, prompt: str, completion: str) -> str:
    """Same env, prompt and completion -> same hash: the key for deduplicating datasets."""
    payload = json.dumps([env_id, prompt, completion], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RolloutRecord(BaseModel):
    """One sampled completion, its verdict, and where it came from."""

    record_id: str
    campaign_id: str
    env_id: str
    env_version: str  # the family's verifier version at generation time
    task_index: int
    task_seed: int
    task_id: str
    difficulty: int
    group_id: str
    group_size: int  # samples per task in the campaign
    sample_index: int
    prompt: str
    completion: str
    reward: float
    passed: bool
    reason: str
    outcome: Outcome
    policy_version: int | None  # None for the reference policy of load tests
    policy_name: str  # "checkpoint" or "reference"
    verifier_version: str
    sandbox_backend: str | None
    sample_seconds: float
    verify_seconds: float
    content_hash: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    drafted: bool | None = None  # sampled speculatively with a drafter; None where the sampler does not say
    details: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=_utcnow)
    seq: int | None = None  # assigned by the store: the trainer's stable cursor


class RecordSummary(BaseModel):
    """A record as a list shows it: provenance and verdict, with prompt and completion cut short."""

    seq: int
    record_id: str
    campaign_id: str
    env_id: str
    task_index: int
    sample_index: int
    difficulty: int
    outcome: Outcome
    reward: float
    reason: str
    policy_version: int | None
    policy_name: str
    verifier_version: str
    created_at: datetime
    prompt_preview: str
    completion_preview: str


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


class MetricsEntry(BaseModel):
    policy_version: int
    step: int
    metrics: dict[str, float]
    created_at: datetime


@dataclass(frozen=True)
class RecordFilter:
    """Which records to read; every field left None does not filter."""

    campaign_id: str | None = None
    env_id: str | None = None
    outcome: Outcome | None = None
    passed: bool | None = None
    min_policy_version: int | None = None
    max_policy_version: int | None = None
    verifier_version: str | None = None  # only records whose verdict this verifier version gave
    policy_name: str | None = None  # "checkpoint" or "reference"
    after_seq: int | None = None  # cursor: only records stored after this one
    limit: int | None = None
    dedupe: bool = False  # keep only the first record of each content hash

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be positive, got {self.limit}")


def _tables(metadata: MetaData) -> tuple[Table, Table, Table]:
    records = Table(
        "rollout_records",
        metadata,
        # An autoincrement cursor: records are read in the order they were stored, never skipped.
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("record_id", String(36), nullable=False, unique=True),
        Column("campaign_id", String(64), nullable=False),
        Column("env_id", String(128), nullable=False),
        Column("env_version", String(64), nullable=False),
        Column("task_index", Integer, nullable=False),
        Column("task_seed", BigInteger, nullable=False),
        Column("task_id", String(256), nullable=False),
        Column("difficulty", Integer, nullable=False),
        Column("group_id", String(128), nullable=False),
        Column("group_size", Integer, nullable=False),
        Column("sample_index", Integer, nullable=False),
        Column("prompt", Text, nullable=False),
        Column("completion", Text, nullable=False),
        Column("reward", Float, nullable=False),
        Column("passed", Boolean, nullable=False),
        Column("reason", Text, nullable=False),
        Column("outcome", String(16), nullable=False),
        Column("policy_version", Integer, nullable=True),
        Column("policy_name", String(32), nullable=False),
        Column("verifier_version", String(64), nullable=False),
        Column("sandbox_backend", String(32), nullable=True),
        Column("sample_seconds", Float, nullable=False),
        Column("verify_seconds", Float, nullable=False),
        Column("content_hash", String(64), nullable=False, index=True),
        Column("token_ids", JSON, nullable=True),
        Column("logprobs", JSON, nullable=True),
        Column("drafted", Boolean, nullable=True),
        Column("details", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        # Few indexes on purpose: every one is paid on each insert, and most reads are a campaign's records
        # in seq order (the primary key) or one batch's tasks (this index).
        Index("ix_rollout_records_campaign_task", "campaign_id", "task_index"),
        # One campaign's records newest first (the dashboard's dataset browser) without sorting the campaign.
        Index("ix_rollout_records_campaign_seq", "campaign_id", "seq"),
    )
    campaigns = Table(
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
    metrics = Table(
        "trainer_metrics",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("policy_version", Integer, nullable=False, index=True),
        Column("step", Integer, nullable=False),
        Column("metrics", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("policy_version", "step", name="uq_trainer_metrics_version_step"),
    )
    return records, campaigns, metrics


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _enable_sqlite_concurrency(dbapi_connection: Any, _record: Any) -> None:
    # Several worker processes write one SQLite file: WAL lets readers run beside a writer,
    # and the busy timeout makes a writer wait for the lock instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class RolloutStore:
    """Records, campaigns and trainer metrics in one database; tables are created on open."""

    def __init__(self, url: str) -> None:
        if not url or "://" not in url:
            raise ValueError(f"store url must be an SQLAlchemy URL such as sqlite:///path.db, got {redact_url(url)}")
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True, future=True)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"the store supports sqlite and postgresql, not {self.dialect!r}")
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _enable_sqlite_concurrency)
        self.metadata = MetaData()
        self.records, self.campaigns, self.metric_rows = _tables(self.metadata)
        self.metadata.create_all(self.engine, checkfirst=True)
        for index in self.records.indexes:  # indexes added since an existing store's table was created
            index.create(self.engine, checkfirst=True)
        self._add_drafted_column()

    def _add_drafted_column(self) -> None:
        """Stores made before records had a `drafted` column get it (NULL for the records already there)."""
        from sqlalchemy import inspect as inspect_schema

        if "drafted" not in {column["name"] for column in inspect_schema(self.engine).get_columns("rollout_records")}:
            with self.engine.begin() as conn:
                conn.execute(text("ALTER TABLE rollout_records ADD COLUMN drafted BOOLEAN"))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> RolloutStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _insert(self, table: Table):  # the dialect's INSERT, which knows ON CONFLICT
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # ---- records -------------------------------------------------------------------------------

    def add_records(self, records: Iterable[RolloutRecord]) -> int:
        """Store records; ones whose record_id is already stored are skipped. Returns how many were new."""
        rows = [r.model_dump(exclude={"seq"}) for r in records]
        if not rows:
            return 0
        for row in rows:
            if row["outcome"] not in OUTCOMES:
                raise ValueError(f"record {row['record_id']}: outcome must be one of {OUTCOMES}")
        statement = (
            self._insert(self.records)
            .on_conflict_do_nothing(index_elements=["record_id"])
            .returning(self.records.c.record_id)
        )
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Writers take turns so that `seq` order is commit order: otherwise a reader at cursor c could
                # see seq c+2 committed before c+1 and step past c+1 for good. (SQLite has one writer anyway.)
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INSERT_LOCK_KEY})
            inserted = conn.execute(statement, rows).all()
        return len(inserted)

    def _where(self, flt: RecordFilter) -> list[Any]:
        c = self.records.c
        clauses: list[Any] = []
        if flt.campaign_id is not None:
            clauses.append(c.campaign_id == flt.campaign_id)
        if flt.env_id is not None:
            clauses.append(c.env_id == flt.env_id)
        if flt.outcome is not None:
            clauses.append(c.outcome == flt.outcome)
        if flt.passed is not None:
            clauses.append(c.passed == flt.passed)
        if flt.min_policy_version is not None:
            clauses.append(c.policy_version >= flt.min_policy_version)
        if flt.max_policy_version is not None:
            clauses.append(c.policy_version <= flt.max_policy_version)
        if flt.verifier_version is not None:
            clauses.append(c.verifier_version == flt.verifier_version)
        if flt.policy_name is not None:
            clauses.append(c.policy_name == flt.policy_name)
        return clauses

    def query(self, flt: RecordFilter = RecordFilter()) -> list[RolloutRecord]:
        """Records matching the filter, in store order (ascending seq)."""
        return list(self.iter_records(flt))

    def iter_records(self, flt: RecordFilter = RecordFilter(), page_size: int = 1000) -> Iterator[RolloutRecord]:
        """Like query, but reads page by page so an export never holds the whole table in memory."""
        c = self.records.c
        where = self._where(flt)
        if flt.dedupe:
            # The first stored record of each content hash among those matching the filter.
            first_seq = select(func.min(c.seq)).where(*where).group_by(c.content_hash)
            where = [*where, c.seq.in_(first_seq.scalar_subquery())]
        cursor = flt.after_seq
        remaining = flt.limit
        while remaining is None or remaining > 0:
            page = page_size if remaining is None else min(page_size, remaining)
            statement = select(self.records).where(*where)
            if cursor is not None:
                statement = statement.where(c.seq > cursor)
            statement = statement.order_by(c.seq).limit(page)
            with self.engine.connect() as conn:
                rows = conn.execute(statement).mappings().all()
            for row in rows:
                yield self._record_from_row(row)
            if len(rows) < page:
                return
            cursor = rows[-1]["seq"]
            if remaining is not None:
                remaining -= len(rows)

    def newest_first(
        self,
        flt: RecordFilter = RecordFilter(),
        before_seq: int | None = None,
        limit: int = 50,
        preview_chars: int = 200,
    ) -> list[RecordSummary]:
        """One page of matching records, newest first, stored before `before_seq` (keyset pagination).

        The query walks the primary key (or a campaign's index) backwards from the cursor and stops after
        `limit` matches, so a page costs the same in a store of ten thousand records or of a million. Prompt
        and completion are cut to `preview_chars` in the database: a page never reads megabytes of text.
        """
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        c = self.records.c
        columns = [
            c.seq,
            c.record_id,
            c.campaign_id,
            c.env_id,
            c.task_index,
            c.sample_index,
            c.difficulty,
            c.outcome,
            c.reward,
            c.reason,
            c.policy_version,
            c.policy_name,
            c.verifier_version,
            c.created_at,
            func.substr(c.prompt, 1, preview_chars).label("prompt_preview"),
            func.substr(c.completion, 1, preview_chars).label("completion_preview"),
        ]
        statement = select(*columns).where(*self._where(flt))
        if before_seq is not None:
            statement = statement.where(c.seq < before_seq)
        statement = statement.order_by(c.seq.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [
            RecordSummary(**{**row, "reason": row["reason"][:preview_chars], "created_at": _as_utc(row["created_at"])})
            for row in rows
        ]

    @staticmethod
    def _record_from_row(row: Any) -> RolloutRecord:
        data = dict(row)
        data["created_at"] = _as_utc(data["created_at"])
        return RolloutRecord.model_validate(data)

    def get_record(self, record_id: str) -> RolloutRecord | None:
        statement = select(self.records).where(self.records.c.record_id == record_id)
        with self.engine.connect() as conn:
            row = conn.execute(statement).mappings().first()
        return None if row is None else self._record_from_row(row)

    def get_record_by_prefix(self, prefix: str) -> RolloutRecord | None:
        """The one record whose id starts with `prefix`; None if none or several do."""
        if not prefix:
            return None
        statement = select(self.records).where(self.records.c.record_id.startswith(prefix, autoescape=True)).limit(2)
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return self._record_from_row(rows[0]) if len(rows) == 1 else None

    def count(self, flt: RecordFilter = RecordFilter()) -> int:
        c = self.records.c
        where = self._where(flt)
        if flt.after_seq is not None:
            where.append(c.seq > flt.after_seq)
        column = func.count(func.distinct(c.content_hash)) if flt.dedupe else func.count()
        with self.engine.connect() as conn:
            return int(conn.execute(select(column).select_from(self.records).where(*where)).scalar_one())

    def outcome_counts(self, campaign_id: str) -> dict[str, int]:
        """How many records of each outcome the campaign has so far (zeros included)."""
        c = self.records.c
        statement = select(c.outcome, func.count()).where(c.campaign_id == campaign_id).group_by(c.outcome)
        counts = dict.fromkeys(OUTCOMES, 0)
        with self.engine.connect() as conn:
            for outcome, n in conn.execute(statement):
                counts[outcome] = int(n)
        return counts

    def stored_record_ids(self, campaign_id: str, task_indices: Iterable[int]) -> set[str]:
        """Record ids already stored for these tasks: lets a redelivered batch skip finished work."""
        indices = list(task_indices)
        c = self.records.c
        statement = select(c.record_id).where(c.campaign_id == campaign_id, c.task_index.in_(indices))
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(statement)}

    def complete_tasks(self, campaign_id: str, task_indices: Iterable[int], samples_per_task: int) -> set[int]:
        """The task indices among these whose `samples_per_task` records are all stored."""
        c = self.records.c
        statement = (
            select(c.task_index)
            .where(c.campaign_id == campaign_id, c.task_index.in_(list(task_indices)))
            .group_by(c.task_index)
            .having(func.count() >= samples_per_task)
        )
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(statement)}

    def time_span(self, campaign_id: str) -> tuple[datetime, datetime] | None:
        """When the campaign's first and last records were stored (None before any)."""
        c = self.records.c
        statement = select(func.min(c.created_at), func.max(c.created_at)).where(c.campaign_id == campaign_id)
        with self.engine.connect() as conn:
            first, last = conn.execute(statement).one()
        if first is None:
            return None
        return _as_utc(first), _as_utc(last)

    def latest_seq(self) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(self.records.c.seq))).scalar_one()

    # ---- campaigns -----------------------------------------------------------------------------

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
            created_at=_utcnow(),
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
        """The ids of `list_campaigns`, in its order, without reading (and validating) specs: for menus."""
        c = self.campaigns.c
        with self.engine.connect() as conn:
            return list(conn.execute(select(c.campaign_id).order_by(c.created_at)).scalars())

    @staticmethod
    def _campaign_from_row(row: Any) -> CampaignRow:
        data = dict(row)
        data["created_at"] = _as_utc(data["created_at"])
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

    def delete_campaign(self, campaign_id: str) -> int:
        """Remove a campaign and its records. Returns how many records went."""
        self._require_campaign(campaign_id)
        with self.engine.begin() as conn:
            gone = conn.execute(delete(self.records).where(self.records.c.campaign_id == campaign_id)).rowcount
            conn.execute(delete(self.campaigns).where(self.campaigns.c.campaign_id == campaign_id))
        return int(gone)

    # ---- the trainer's metrics -----------------------------------------------------------------

    def record_metrics(self, policy_version: int, metrics: dict[str, float], step: int) -> None:
        """Store one evaluation; evaluating the same (version, step) again replaces it."""
        if not metrics:
            raise ValueError("metrics must hold at least one name: value")
        clean = {str(k): float(v) for k, v in metrics.items()}
        statement = self._insert(self.metric_rows).values(
            policy_version=int(policy_version), step=int(step), metrics=clean, created_at=_utcnow()
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
                created_at=_as_utc(r["created_at"]),
            )
            for r in rows
        ]
