"""The store's database: one SQLAlchemy engine over a SQLite file (one machine) or PostgreSQL (a farm).

Each kind of row the store holds (records, campaigns, trainer metrics) is a part built on `Database`: its table
and its queries in a module of its own, all on this one engine.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, MetaData, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite

from verifarm.redaction import redact_url


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
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


class Database:
    """The engine of a store URL (SQLite or PostgreSQL only) and the metadata its tables are defined on."""

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

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """The dialect's INSERT, which knows ON CONFLICT."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def close(self) -> None:
        self.engine.dispose()
