"""Datasets from the store: filtered, deduplicated records written as JSONL or Parquet that
`datasets.load_dataset("json" | "parquet", data_files=...)` reads, with an optional deterministic split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from verifarm.rollout.store import RecordFilter, RolloutRecord, RolloutStore

ExportFormat = Literal["jsonl", "parquet"]

# Column order of an exported row. `details` is a JSON string: its keys differ between envs, and one flat
# schema is what lets a data loader read a mixed export without casting errors.
COLUMNS: tuple[str, ...] = (
    "record_id",
    "campaign_id",
    "env_id",
    "env_version",
    "task_index",
    "task_seed",
    "task_id",
    "difficulty",
    "group_id",
    "group_size",
    "sample_index",
    "prompt",
    "completion",
    "reward",
    "passed",
    "reason",
    "outcome",
    "policy_version",
    "policy_name",
    "verifier_version",
    "sandbox_backend",
    "sample_seconds",
    "verify_seconds",
    "content_hash",
    "token_ids",
    "logprobs",
    "details",
    "created_at",
    "seq",
)


def export_row(record: RolloutRecord) -> dict[str, Any]:
    row = record.model_dump(mode="json")
    row["details"] = json.dumps(row["details"], sort_keys=True)
    return {name: row[name] for name in COLUMNS}


def split_of(group_id: str, test_fraction: float) -> str:
    """'train' or 'test' by a hash of the task's group: all samples of one task land on the same side."""
    bucket = int.from_bytes(hashlib.sha256(group_id.encode()).digest()[:8], "big") / 2**64
    return "test" if bucket < test_fraction else "train"


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {
        "task_index": pa.int64(),
        "task_seed": pa.int64(),
        "difficulty": pa.int64(),
        "group_size": pa.int64(),
        "sample_index": pa.int64(),
        "reward": pa.float64(),
        "passed": pa.bool_(),
        "policy_version": pa.int64(),
        "sample_seconds": pa.float64(),
        "verify_seconds": pa.float64(),
        "token_ids": pa.list_(pa.int64()),
        "logprobs": pa.list_(pa.float64()),
        "seq": pa.int64(),
    }
    return pa.schema([(name, types.get(name, pa.string())) for name in COLUMNS])


class _Sink:
    """One output file, written row by row (JSONL) or in row groups (Parquet)."""

    def __init__(self, path: Path, fmt: ExportFormat, rows_per_group: int = 2048) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fmt, self.rows_per_group = path, fmt, rows_per_group
        self.count = 0
        self._pending: list[dict[str, Any]] = []
        if fmt == "jsonl":
            self._handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 -- held across writes; close() closes it
        else:
            import pyarrow.parquet as pq

            self._schema = _arrow_schema()
            self._writer = pq.ParquetWriter(str(path), self._schema)

    def write(self, row: dict[str, Any]) -> None:
        self.count += 1
        if self.fmt == "jsonl":
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        self._pending.append(row)
        if len(self._pending) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            self._writer.write_table(pa.Table.from_pylist(self._pending, schema=self._schema))
            self._pending = []

    def close(self) -> None:
        if self.fmt == "jsonl":
            self._handle.close()
        else:
            self._flush()
            self._writer.close()


@dataclass(frozen=True)
class ExportResult:
    files: dict[str, Path]  # split name ("all", "train", "test") -> file
    rows: dict[str, int]


def export_records(
    store: RolloutStore,
    flt: RecordFilter,
    out: Path,
    fmt: ExportFormat = "jsonl",
    test_fraction: float | None = None,
) -> ExportResult:
    """Write the records matching `flt` to `out` (a file), or with `test_fraction` to out/train.* and out/test.*."""
    if fmt not in ("jsonl", "parquet"):
        raise ValueError(f"export format must be 'jsonl' or 'parquet', got {fmt!r}")
    if test_fraction is not None and not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must lie strictly between 0 and 1, got {test_fraction}")
    out = Path(out)
    if test_fraction is None:
        sinks = {"all": _Sink(out, fmt)}
    else:
        sinks = {name: _Sink(out / f"{name}.{fmt}", fmt) for name in ("train", "test")}
    try:
        for record in store.iter_records(flt):
            name = "all" if test_fraction is None else split_of(record.group_id, test_fraction)
            sinks[name].write(export_row(record))
    finally:
        for sink in sinks.values():
            sink.close()
    return ExportResult(
        {name: sink.path for name, sink in sinks.items()}, {name: sink.count for name, sink in sinks.items()}
    )
