"""The rollout store on SQLite and on the real PostgreSQL: idempotent inserts, filters, cursor, campaigns, metrics."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from verifarm.rollout.store import (
    RecordFilter,
    RolloutRecord,
    RolloutStore,
    content_hash_for,
    group_id_for,
    record_id_for,
)


def stored_record_ids(store: RolloutStore, campaign_id: str, task_indices: list[int]) -> set[str]:
    c = store.records.c
    statement = select(c.record_id).where(c.campaign_id == campaign_id, c.task_index.in_(task_indices))
    with store.engine.connect() as conn:
        return {row[0] for row in conn.execute(statement)}


def delete_campaign(store: RolloutStore, campaign_id: str) -> int:
    """Remove a campaign and its records; returns how many records went."""
    with store.engine.begin() as conn:
        gone = conn.execute(delete(store.records).where(store.records.c.campaign_id == campaign_id)).rowcount
        conn.execute(delete(store.campaigns).where(store.campaigns.c.campaign_id == campaign_id))
    return int(gone)


def make_record(
    campaign: str,
    task: int,
    sample: int,
    *,
    completion: str | None = None,
    outcome: str = "pass",
    policy_version: int | None = 1,
    env_id: str = "verifarm/Addition-v0",
) -> RolloutRecord:
    prompt = f"{task}+{task}=?\n"
    completion = completion if completion is not None else f"Answer: {2 * task} #{sample}\n"
    return RolloutRecord(
        record_id=record_id_for(campaign, task, sample),
        campaign_id=campaign,
        env_id=env_id,
        env_version="1",
        task_index=task,
        task_seed=1000 + task,
        task_id=f"add-{task}",
        difficulty=1,
        group_id=group_id_for(campaign, task),
        group_size=4,
        sample_index=sample,
        prompt=prompt,
        completion=completion,
        reward=1.0 if outcome == "pass" else 0.0,
        passed=outcome == "pass",
        reason="ok",
        outcome=outcome,
        policy_version=policy_version,
        policy_name="checkpoint",
        verifier_version="1",
        sandbox_backend=None,
        sample_seconds=0.01,
        verify_seconds=0.001,
        content_hash=content_hash_for(env_id, prompt, completion),
        token_ids=[1, 2, 3],
        logprobs=[-0.1, -0.2],
        details={"parsed": str(2 * task)},
    )


def test_record_ids_are_deterministic_and_distinct() -> None:
    assert record_id_for("c", 3, 1) == record_id_for("c", 3, 1)
    ids = {record_id_for(c, t, s) for c in ("a", "b") for t in range(10) for s in range(4)}
    assert len(ids) == 2 * 10 * 4


def test_insert_is_idempotent_and_round_trips(store: RolloutStore) -> None:
    batch = [make_record("c1", t, s) for t in range(3) for s in range(2)]
    assert store.add_records(batch) == 6
    # A redelivered task writes the same ids again, partly overlapping with new ones.
    again = batch[:4] + [make_record("c1", 3, s) for s in range(2)]
    assert store.add_records(again) == 2
    got = store.query(RecordFilter(campaign_id="c1"))
    assert len(got) == 8
    assert len({r.record_id for r in got}) == 8
    first = got[0]
    original = batch[0]
    assert first.model_dump(exclude={"seq", "created_at"}) == original.model_dump(exclude={"seq", "created_at"})
    assert first.created_at.tzinfo is not None
    assert [r.seq for r in got] == sorted(r.seq for r in got)


def test_filters_cursor_and_dedupe(store: RolloutStore) -> None:
    records = []
    for t in range(6):
        for s in range(3):
            outcome = "pass" if (t + s) % 2 == 0 else "fail"
            records.append(
                make_record(
                    "c",
                    t,
                    s,
                    outcome=outcome,
                    policy_version=t % 3,
                    env_id="verifarm/Addition-v0" if t < 4 else "verifarm/MathAnswer-v0",
                )
            )
    # Two samples with identical text: same content hash, deduplicated away on request.
    records.append(make_record("d", 0, 0, completion="same"))
    records.append(make_record("d", 0, 1, completion="same"))
    store.add_records(records)

    assert store.count(RecordFilter(campaign_id="c")) == 18
    passed = store.query(RecordFilter(campaign_id="c", passed=True))
    assert passed and all(r.passed and r.outcome == "pass" for r in passed)
    assert store.count(RecordFilter(campaign_id="c", outcome="fail")) == 18 - len(passed)
    assert {r.env_id for r in store.query(RecordFilter(env_id="verifarm/MathAnswer-v0"))} == {"verifarm/MathAnswer-v0"}
    versions = {r.policy_version for r in store.query(RecordFilter(min_policy_version=1, max_policy_version=1))}
    assert versions == {1}

    # Cursor: read in pages of 5 and get every record exactly once, in order.
    seen: list[int] = []
    cursor = None
    while True:
        page = store.query(RecordFilter(after_seq=cursor, limit=5))
        if not page:
            break
        seen.extend(r.seq for r in page)
        cursor = page[-1].seq
    assert len(seen) == 20 and seen == sorted(set(seen))
    assert store.latest_seq() == seen[-1]

    assert store.count(RecordFilter(campaign_id="d")) == 2
    assert store.count(RecordFilter(campaign_id="d", dedupe=True)) == 1
    deduped = store.query(RecordFilter(campaign_id="d", dedupe=True))
    assert len(deduped) == 1 and deduped[0].sample_index == 0
    assert store.outcome_counts("c") == {"pass": len(passed), "fail": 18 - len(passed), "infra_error": 0}


def test_paged_iteration_over_many_rows(store: RolloutStore) -> None:
    store.add_records(make_record("big", t, 0) for t in range(250))
    assert [r.task_index for r in store.iter_records(RecordFilter(campaign_id="big"), page_size=64)] == list(range(250))
    assert len(store.query(RecordFilter(campaign_id="big", limit=130))) == 130


def test_campaigns_crud(store: RolloutStore) -> None:
    row = store.create_campaign("camp", "demo", {"tasks": 3}, total_tasks=3, samples_per_task=2, priority=5)
    assert row.expected_records == 6
    with pytest.raises(ValueError, match="already exists"):
        store.create_campaign("camp", "demo", {}, total_tasks=1, samples_per_task=1, priority=0)
    assert store.get_campaign("camp").spec == {"tasks": 3}
    assert not store.is_cancelled("camp")
    store.set_cancelled("camp")
    assert store.is_cancelled("camp")
    store.add_infra_retries("camp", 2)
    store.add_infra_retries("camp", 3)
    assert store.get_campaign("camp").infra_retries == 5
    assert [c.campaign_id for c in store.list_campaigns()] == ["camp"]
    store.add_records([make_record("camp", 0, 0), make_record("camp", 0, 1)])
    assert stored_record_ids(store, "camp", [0, 1]) == {record_id_for("camp", 0, 0), record_id_for("camp", 0, 1)}
    store.add_records([make_record("camp", 1, 0)])
    assert store.complete_tasks("camp", [0, 1, 2], samples_per_task=2) == {0}
    assert store.complete_tasks("camp", [0, 1, 2], samples_per_task=1) == {0, 1}
    assert delete_campaign(store, "camp") == 3
    assert store.get_campaign("camp") is None
    with pytest.raises(ValueError, match="no campaign"):
        store.is_cancelled("camp")


def test_trainer_metrics(store: RolloutStore) -> None:
    store.record_metrics(1, {"pass@1": 0.25, "loss": 1.5}, step=10)
    store.record_metrics(2, {"pass@1": 0.5}, step=20)
    store.record_metrics(1, {"pass@1": 0.3, "loss": 1.4}, step=10)  # re-evaluation replaces
    entries = store.metrics()
    assert [(e.policy_version, e.step) for e in entries] == [(1, 10), (2, 20)]
    assert entries[0].metrics == {"pass@1": 0.3, "loss": 1.4}
    assert [e.metrics["pass@1"] for e in store.metrics(policy_version=2)] == [0.5]
    with pytest.raises(ValueError):
        store.record_metrics(3, {}, step=1)


def test_bad_inputs_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SQLAlchemy URL"):
        RolloutStore("rollouts.db")
    with pytest.raises(ValueError, match="outcome"):
        RecordFilter(outcome="maybe")  # type: ignore[arg-type]


def _write_from_process(url: str, worker: int) -> None:
    with RolloutStore(url) as store:
        for t in range(20):
            # Both processes write the same ids (like a redelivered task) and their own ones.
            store.add_records([make_record("conc", t, 0), make_record("conc", t, 1 + worker)])


def test_concurrent_writers_never_duplicate(store_url: str) -> None:
    RolloutStore(store_url).close()  # create tables before the race
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_from_process, args=(store_url, w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with RolloutStore(store_url) as store:
        assert store.count(RecordFilter(campaign_id="conc")) == 20 * 3


def test_newest_first_pages_by_keyset_and_cuts_long_text(store: RolloutStore) -> None:
    records = [make_record("a", t, 0, outcome="pass" if t % 3 else "fail") for t in range(10)]
    records += [make_record("b", t, 0, completion="x" * 5000) for t in range(5)]
    store.add_records(records)
    everything = store.query()
    first = store.newest_first(RecordFilter(), limit=4)
    assert [r.seq for r in first] == [r.seq for r in everything][::-1][:4]
    second = store.newest_first(RecordFilter(), before_seq=first[-1].seq, limit=4)
    assert [r.seq for r in second] == [r.seq for r in everything][::-1][4:8]
    assert all(len(r.completion_preview) == 200 for r in first)  # campaign b's 5000-character completions
    fails = store.newest_first(RecordFilter(campaign_id="a", outcome="fail"), limit=50)
    assert [r.task_index for r in fails] == [9, 6, 3, 0]
    assert store.newest_first(RecordFilter(verifier_version="2")) == []
    assert len(store.newest_first(RecordFilter(policy_name="checkpoint", verifier_version="1"), limit=50)) == 15
    with pytest.raises(ValueError, match="limit must be positive"):
        store.newest_first(limit=0)


def test_newest_window_bounds_the_walk_and_pages_through_everything(store: RolloutStore) -> None:
    store.add_records([make_record("old", t, 0, outcome="fail" if t % 2 else "pass") for t in range(6)])
    store.add_records([make_record("new", t, 0, outcome="fail" if t % 5 == 0 else "pass") for t in range(30)])
    for flt in (RecordFilter(outcome="fail"), RecordFilter(campaign_id="new", outcome="fail"), RecordFilter()):
        expected = [r.seq for r in store.newest_first(flt, limit=1000)]
        for window, limit in ((4, 3), (7, 2), (100, 3)):
            seen, cursor, pages = [], None, 0
            while pages == 0 or cursor is not None:
                page = store.newest_window(flt, before_seq=cursor, limit=limit, window=window)
                assert len(page.records) <= limit
                seqs = [r.seq for r in page.records]
                # A window holds at most `window` consecutive seqs below the cursor.
                assert not seqs or seqs[0] - seqs[-1] < window
                if page.searched_to is not None:
                    assert len(page.records) < limit and all(s >= page.searched_to for s in seqs)
                seen += seqs
                cursor = seqs[-1] if len(seqs) == limit else page.searched_to
                pages += 1
            assert seen == expected, (flt, window, limit)
    # An old campaign's first page starts at its own newest record, however many records came after it.
    old_fails = store.newest_window(RecordFilter(campaign_id="old", outcome="fail"), limit=10, window=6)
    assert [r.task_index for r in old_fails.records] == [5, 3, 1] and old_fails.searched_to is None
    nothing = store.newest_window(RecordFilter(verifier_version="2"), limit=10, window=8)
    assert nothing.records == [] and nothing.searched_to == store.latest_seq() - 7
    with pytest.raises(ValueError, match="window must be positive"):
        store.newest_window(RecordFilter(outcome="fail"), window=0)


def test_a_bounded_count_stops_past_its_bound(store: RolloutStore) -> None:
    records = [make_record("c", 0, i, completion=f"Answer: {i % 3}") for i in range(7)]
    store.add_records(records)
    assert store.count(RecordFilter()) == 7 and store.count(RecordFilter(dedupe=True)) == 3
    assert store.count(RecordFilter(), at_most=10) == 7 and store.count(RecordFilter(), at_most=4) == 5
    assert store.count(RecordFilter(dedupe=True), at_most=2) == 3  # deduplicated counts stay exact


def test_campaign_ids_follow_every_commit_of_any_connection(store: RolloutStore, store_url: str) -> None:
    assert store.campaign_ids() == []
    store.create_campaign("later", "later", {"policy": "reference"}, 1, 1, 5)
    assert store.campaign_ids() == ["later"]
    # Another engine on the same database, as another process (the CLI submitting a campaign) would write.
    with RolloutStore(store_url) as other:
        other.create_campaign("newest", "newest", {"policy": "reference"}, 1, 1, 5)
        assert store.campaign_ids() == ["later", "newest"]
        other.set_cancelled("later")  # a commit that changes no id
        assert store.campaign_ids() == ["later", "newest"] == [row.campaign_id for row in store.list_campaigns()]
