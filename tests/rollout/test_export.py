"""Dataset export: JSONL and Parquet that `datasets.load_dataset` reads, filtered, deduplicated, split by task."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.export import COLUMNS, export_records, split_of
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RecordFilter, RolloutStore


@pytest.fixture
def filled_store(tmp_path: Path):
    with RolloutStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        # Temperature-free reference samples repeat, so every task has duplicate contents to dedupe.
        spec = parse_spec(
            {
                "envs": [
                    {"env_id": "verifarm/Addition-v0", "max_difficulty": 3},
                    {"env_id": "verifarm/Arithmetic-v0", "max_difficulty": 2},
                ],
                "tasks": 30,
                "samples_per_task": 4,
                "policy": "reference",
                "reference_corruption": 0.3,
            }
        )
        store.create_campaign("exp", "exp", spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, 5)
        rollout_batch(store, "exp", spec, range(spec.tasks), ReferencePolicy(0.3, 0), FamilyCache())
        yield store


def test_jsonl_and_parquet_load_with_datasets(filled_store: RolloutStore, tmp_path: Path) -> None:
    flt = RecordFilter(campaign_id="exp")
    everything = filled_store.query(flt)
    for fmt in ("jsonl", "parquet"):
        result = export_records(filled_store, flt, tmp_path / f"all.{fmt}", fmt)  # type: ignore[arg-type]
        loaded = datasets.load_dataset(
            "json" if fmt == "jsonl" else "parquet", data_files=str(result.files["all"]), split="train"
        )
        assert loaded.num_rows == len(everything) == 120
        assert list(loaded.column_names) == list(COLUMNS)
        assert loaded["record_id"] == [r.record_id for r in everything]
        assert loaded["completion"] == [r.completion for r in everything]
        assert loaded["passed"] == [r.passed for r in everything]
        assert json.loads(loaded["details"][0]) == everything[0].details
        assert loaded["policy_version"][0] is None  # the reference policy has no version


def test_filters_and_dedupe_in_export(filled_store: RolloutStore, tmp_path: Path) -> None:
    passing = RecordFilter(campaign_id="exp", outcome="pass", dedupe=True)
    result = export_records(filled_store, passing, tmp_path / "pass.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "pass.jsonl").read_text().splitlines()]
    assert rows and all(r["outcome"] == "pass" for r in rows)
    assert len({r["content_hash"] for r in rows}) == len(rows) == result.rows["all"]
    all_passing = filled_store.count(RecordFilter(campaign_id="exp", outcome="pass"))
    assert len(rows) < all_passing  # the reference's passing samples of one task are identical
    assert len(rows) == filled_store.count(RecordFilter(campaign_id="exp", outcome="pass", dedupe=True))
    only_addition = export_records(filled_store, RecordFilter(env_id="verifarm/Addition-v0"), tmp_path / "a.jsonl")
    assert only_addition.rows["all"] == filled_store.count(RecordFilter(env_id="verifarm/Addition-v0"))


def test_split_keeps_each_task_on_one_side(filled_store: RolloutStore, tmp_path: Path) -> None:
    result = export_records(filled_store, RecordFilter(campaign_id="exp"), tmp_path / "split", "parquet", 0.3)
    train = datasets.load_dataset("parquet", data_files=str(result.files["train"]), split="train")
    test = datasets.load_dataset("parquet", data_files=str(result.files["test"]), split="train")
    assert train.num_rows + test.num_rows == 120 and train.num_rows > 0 and test.num_rows > 0
    assert not set(train["group_id"]) & set(test["group_id"])
    assert all(split_of(g, 0.3) == "test" for g in test["group_id"])


def test_bad_export_arguments(filled_store: RolloutStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        export_records(filled_store, RecordFilter(), tmp_path / "x.csv", "csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="test fraction"):
        export_records(filled_store, RecordFilter(), tmp_path / "x", "jsonl", 1.5)
