"""Verdicts already given, shared by every worker: an identical completion of the same task is verified once.

Campaigns sampled at low temperature repeat themselves (the n samples of a task, and the same task drawn by
another campaign), and a code verifier spends a sandbox run on every repeat. A verifier is a pure function of
(task, completion) at a given verifier version, so its verdict can be reused; the key hashes the env id (with
its options), the verifier version, the task's identity (id, prompt and data) and the completion. The table lives in
the rollout store's database, where all workers already write. Infra errors judge the sandbox, not the
completion, and are never stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, Column, DateTime, Engine, Float, MetaData, String, Table, Text, func, select
from sqlalchemy.dialects import postgresql, sqlite

from verifarm.envs.base import Task, Verdict

# The key a record's details carry when its verdict came from the cache rather than from a verifier run.
CACHED_DETAIL = "verdict_cached"
# Keys looked up per query: well under any database's bound-parameter limit.
_LOOKUP_CHUNK = 500


def verdict_key(env_id: str, options: Mapping[str, Any], verifier_version: str, task: Task, completion: str) -> str:
    """The cache key of verifying `completion` on `task`: equal only when the verifier would see the same input."""
    payload = json.dumps(
        # The task's data (tests, expected values, a translation's source) is what the verifier judges against.
        [env_id, dict(options), verifier_version, task.task_id, task.prompt, task.data, completion],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedVerdict:
    key: str
    env_id: str
    verifier_version: str
    verdict: Verdict


def _table(metadata: MetaData) -> Table:
    return Table(
        "verdict_cache",
        metadata,
        Column("key", String(64), primary_key=True),
        Column("env_id", String(128), nullable=False),
        Column("verifier_version", String(64), nullable=False),
        Column("reward", Float, nullable=False),
        Column("passed", Boolean, nullable=False),
        Column("reason", Text, nullable=False),
        Column("details", JSON, nullable=False),
        Column("sandbox_seconds", Float, nullable=False),
        Column("compile_seconds", Float, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


class VerdictCache:
    """The `verdict_cache` table of a store's database (created on first use)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.table = _table(MetaData())
        self.table.create(engine, checkfirst=True)

    def lookup(self, keys: Iterable[str]) -> dict[str, Verdict]:
        """The stored verdicts among these keys (absent keys are simply missing from the result)."""
        wanted = sorted(set(keys))
        found: dict[str, Verdict] = {}
        c = self.table.c
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[start : start + _LOOKUP_CHUNK]
                for row in conn.execute(select(self.table).where(c.key.in_(chunk))).mappings():
                    found[row["key"]] = Verdict(
                        reward=row["reward"],
                        passed=row["passed"],
                        reason=row["reason"],
                        details=dict(row["details"]),
                        sandbox_seconds=row["sandbox_seconds"],
                        compile_seconds=row["compile_seconds"],
                    )
        return found

    def store(self, entries: Iterable[CachedVerdict]) -> int:
        """Keep these verdicts; infra errors are refused (skipped), keys already stored are left as they are.
        Returns how many rows were new."""
        now = datetime.now(timezone.utc)
        rows = {
            entry.key: {
                "key": entry.key,
                "env_id": entry.env_id,
                "verifier_version": entry.verifier_version,
                "reward": entry.verdict.reward,
                "passed": entry.verdict.passed,
                "reason": entry.verdict.reason,
                "details": entry.verdict.details,
                "sandbox_seconds": entry.verdict.sandbox_seconds,
                "compile_seconds": entry.verdict.compile_seconds,
                "created_at": now,
            }
            for entry in entries
            if not entry.verdict.infra_error
        }
        if not rows:
            return 0
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        # Two workers verifying the same completion at once both store it: the second insert is a no-op.
        statement = insert(self.table).on_conflict_do_nothing(index_elements=["key"]).returning(self.table.c.key)
        with self.engine.begin() as conn:
            return len(conn.execute(statement, list(rows.values())).all())

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self.table)).scalar_one())
