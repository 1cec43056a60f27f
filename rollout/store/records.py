"""Rollout records: one row per sampled completion, with its verdict and provenance, and the queries on them.

Inserts are idempotent on the deterministic record id, so a redelivered Celery task never duplicates a row;
`seq` numbers records in the order they were stored, the cursor the trainer reads by.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy import inspect as inspect_schema

from verifarm.rollout.store.database import Database, as_utc, utcnow

Outcome = Literal["pass", "fail", "infra_error"]
OUTCOMES: tuple[str, ...] = ("pass", "fail", "infra_error")

# Any fixed 64-bit number: the PostgreSQL advisory lock that orders record inserts.
_INSERT_LOCK_KEY = 0x7665726966726D31


class RolloutRecord(BaseModel):
    """One sampled completion, its verdict, and where it came from."""

    record_id: str
    campaign_id: str
    env_id: str
    env_version: str  # the env id's version suffix ("v0" of verifarm/Addition-v0); the verifier's is verifier_version
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
    created_at: datetime = Field(default_factory=utcnow)
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


@dataclass(frozen=True)
class RecordWindow:
    """A page of `RecordStore.newest_window`: the matches, newest first, and where the search stopped."""

    records: list[RecordSummary]
    searched_to: int | None  # the lowest seq examined when the window ran out first and older records remain


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


def records_table(metadata: MetaData) -> Table:
    return Table(
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


class RecordStore(Database):
    """The records table (created on open, brought up to date if an older store made it) and its queries."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.records = records_table(self.metadata)
        self.records.create(self.engine, checkfirst=True)
        for index in self.records.indexes:  # indexes added since an existing store's table was created
            index.create(self.engine, checkfirst=True)
        self._add_drafted_column()

    def _add_drafted_column(self) -> None:
        """Stores made before records had a `drafted` column get it (NULL for the records already there)."""
        if "drafted" not in {column["name"] for column in inspect_schema(self.engine).get_columns("rollout_records")}:
            with self.engine.begin() as conn:
                conn.execute(text("ALTER TABLE rollout_records ADD COLUMN drafted BOOLEAN"))

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

    def _where(self, flt: RecordFilter, table: Any = None) -> list[Any]:
        c = (self.records if table is None else table).c
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

    def _first_of_its_content(self, flt: RecordFilter) -> Any:
        """The first stored record of each content hash among those matching the filter: no earlier matching
        record has its hash. One content_hash index probe per row read, so a page costs the same in a store of
        any size (grouping the whole table per page made an export quadratic)."""
        c, earlier = self.records.c, self.records.alias("earlier")
        repeat = select(earlier.c.seq).where(
            earlier.c.content_hash == c.content_hash, earlier.c.seq < c.seq, *self._where(flt, earlier)
        )
        return ~repeat.exists()

    def query(self, flt: RecordFilter = RecordFilter()) -> list[RolloutRecord]:
        """Records matching the filter, in store order (ascending seq)."""
        return list(self.iter_records(flt))

    def iter_records(self, flt: RecordFilter = RecordFilter(), page_size: int = 1000) -> Iterator[RolloutRecord]:
        """Like query, but reads page by page so an export never holds the whole table in memory."""
        c = self.records.c
        where = self._where(flt)
        if flt.dedupe:
            where.append(self._first_of_its_content(flt))
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
        A filter that matches almost nothing still walks to the oldest record; `newest_window` bounds that walk.
        """
        statement = self._newest_statement(flt, before_seq, limit, preview_chars)
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [self._summary_from_row(row, preview_chars) for row in rows]

    def newest_window(
        self,
        flt: RecordFilter = RecordFilter(),
        before_seq: int | None = None,
        limit: int = 50,
        preview_chars: int = 200,
        window: int = 10_000,
    ) -> RecordWindow:
        """Like `newest_first`, but examining at most `window` consecutive seqs, so that no filter costs more
        than a bounded walk. The window ends at the newest record before the cursor (of the filter's campaign,
        found through its index, so an old campaign's page starts at its own records); when it holds fewer than
        `limit` matches, `searched_to` is where the walk stopped and the cursor of the next window. A filter on
        nothing but the campaign needs no window: every record the walk meets matches."""
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        if flt == RecordFilter(campaign_id=flt.campaign_id):
            # Every record (of the campaign's index) matches: the walk stops after `limit` rows by itself.
            return RecordWindow(self.newest_first(flt, before_seq, limit, preview_chars), None)
        # One statement: the window's floor is a scalar subquery (one step down an index), and rides along as a
        # column so that a page short of `limit` knows where its window ended.
        floor = self._newest_seq(flt.campaign_id, before_seq).scalar_subquery() - window
        statement = self._newest_statement(flt, before_seq, limit, preview_chars)
        statement = statement.add_columns(floor.label("window_floor")).where(self.records.c.seq > floor)
        with self.engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
            searched_to: int | None = None
            if len(rows) < limit:
                lowest = rows[0]["window_floor"] if rows else conn.execute(select(floor)).scalar()
                # Older records exist if the campaign (or the store) has any at or below the window's floor.
                if lowest is not None and conn.execute(self._newest_seq(flt.campaign_id, lowest + 1)).scalar():
                    searched_to = int(lowest) + 1
        return RecordWindow([self._summary_from_row(row, preview_chars) for row in rows], searched_to)

    def _newest_seq(self, campaign_id: str | None, before_seq: int | None) -> Any:
        """The newest seq (of a campaign) stored before `before_seq`: one step down an index."""
        c = self.records.c
        statement = select(func.max(c.seq))
        if campaign_id is not None:
            statement = statement.where(c.campaign_id == campaign_id)
        if before_seq is not None:
            statement = statement.where(c.seq < before_seq)
        return statement

    def _newest_statement(self, flt: RecordFilter, before_seq: int | None, limit: int, preview_chars: int) -> Any:
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
        return statement.order_by(c.seq.desc()).limit(limit)

    @staticmethod
    def _summary_from_row(row: Any, preview_chars: int) -> RecordSummary:
        return RecordSummary(
            **{
                **row,
                "reason": row["reason"][:preview_chars],
                "created_at": as_utc(row["created_at"]),
            }
        )

    @staticmethod
    def _record_from_row(row: Any) -> RolloutRecord:
        data = dict(row)
        data["created_at"] = as_utc(data["created_at"])
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

    def count(self, flt: RecordFilter = RecordFilter(), at_most: int | None = None) -> int:
        """How many records match. With `at_most`, counting stops past it (at_most + 1 means "more"), so the
        answer costs the same in a store of ten thousand records or of a million (for a filter an index serves).
        A deduplicated count is always exact: it has to see every match."""
        c = self.records.c
        where = self._where(flt)
        if flt.after_seq is not None:
            where.append(c.seq > flt.after_seq)
        if at_most is not None and not flt.dedupe:
            matching = select(c.seq).where(*where).limit(at_most + 1).subquery()
            with self.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(matching)).scalar_one())
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
        return as_utc(first), as_utc(last)

    def latest_seq(self) -> int | None:
        """The newest record's seq (None while the store is empty): a resumed trainer's cursor must not be past it."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(self.records.c.seq))).scalar_one()
