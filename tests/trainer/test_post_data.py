"""Post-training batches from a real SQLite store: whole groups, staleness bound, an exact cursor."""

from datetime import datetime, timedelta, timezone

from verifarm.rollout.store import RolloutRecord, RolloutStore, content_hash_for, group_id_for, record_id_for
from verifarm.trainer.post_data import PostSelection, read_post_batch
from verifarm.trainer.schedule import DataCursor

ENV = "verifarm/Addition-v0"


def group(campaign, task_index, passed, version, env=ENV, created_at=None):
    records = []
    for i, ok in enumerate(passed):
        completion = f"c{task_index}-{i}-{ok}"
        records.append(
            RolloutRecord(
                record_id=record_id_for(campaign, task_index, i),
                campaign_id=campaign,
                env_id=env,
                env_version="1",
                task_index=task_index,
                task_seed=task_index,
                task_id=f"t{task_index}",
                difficulty=1,
                group_id=group_id_for(campaign, task_index),
                group_size=len(passed),
                sample_index=i,
                prompt=f"p{task_index}\n",
                completion=completion,
                reward=float(ok),
                passed=ok,
                reason="r",
                outcome="pass" if ok else "fail",
                policy_version=version,
                policy_name="checkpoint",
                verifier_version="1",
                sandbox_backend=None,
                sample_seconds=0.0,
                verify_seconds=0.0,
                content_hash=content_hash_for(env, f"p{task_index}\n", completion),
                **({"created_at": created_at} if created_at else {}),
            )
        )
    return records


def selection(bound=1, wait=120.0):
    return PostSelection(env_ids=(ENV,), campaign_id=None, staleness_bound=bound, group_wait_seconds=wait)


def test_rft_uses_passing_samples_once_and_skips_stale(tmp_path):
    store = RolloutStore(f"sqlite:///{tmp_path / 's.db'}")
    store.add_records(group("c", 0, [True, False, True], version=1))  # stale at current 5, bound 1
    store.add_records(group("c", 1, [True, True, False], version=4))
    store.add_records(group("c", 2, [False, False, False], version=5))
    store.add_records(group("c", 3, [True, False, False], version=5))
    store.add_records(group("c", 4, [True, True, True], version=5, env="verifarm/Other-v0"))

    batch, cursor = read_post_batch(store, DataCursor(), "rft", 2, current_version=5, selection=selection())
    assert batch.completions == ["c1-0-True", "c1-1-True"] and batch.staleness == [1, 1]
    assert cursor.records_skipped_stale == 3 and cursor.records_used == 2
    batch, cursor = read_post_batch(store, cursor, "rft", 2, current_version=5, selection=selection())
    assert batch.completions == ["c3-0-True"]
    assert cursor.records_used == 3 and cursor.records_skipped_other == 1 + 3 + 2 + 3
    assert cursor.store_after_seq == store.latest_seq()
    # Nothing left: no batch, and a resumed cursor never re-reads what was used.
    assert read_post_batch(store, cursor, "rft", 2, current_version=5, selection=selection())[0] is None


def test_full_batch_leaves_next_group_unconsumed(tmp_path):
    store = RolloutStore(f"sqlite:///{tmp_path / 's.db'}")
    for t in range(3):
        store.add_records(group("c", t, [True, True], version=0))
    batch, cursor = read_post_batch(store, DataCursor(), "rft", 3, current_version=0, selection=selection())
    assert len(batch) == 2  # a second group would overflow 3
    batch2, cursor = read_post_batch(store, cursor, "rft", 4, current_version=0, selection=selection())
    assert batch2.prompts == ["p1\n", "p1\n", "p2\n", "p2\n"] and batch2.group_ids == [0, 0, 1, 1]


def test_grpo_takes_whole_groups_with_signal_and_waits_for_incomplete_ones(tmp_path):
    store = RolloutStore(f"sqlite:///{tmp_path / 's.db'}")
    store.add_records(group("c", 0, [True, True], version=0))  # no reward spread: no signal
    store.add_records(group("c", 1, [True, False], version=0))
    partial = group("c", 2, [True, False, False], version=0)
    store.add_records(partial[:2])  # the third sample is still being written
    batch, cursor = read_post_batch(store, DataCursor(), "grpo", 8, current_version=0, selection=selection())
    assert batch.rewards == [1.0, 0.0] and batch.group_ids == [0, 0]
    assert cursor.store_after_seq == 4  # stopped before the incomplete group
    store.add_records(partial[2:])
    batch, cursor = read_post_batch(store, cursor, "grpo", 8, current_version=0, selection=selection())
    assert batch.rewards == [1.0, 0.0, 0.0]


def test_group_missing_samples_for_too_long_is_skipped(tmp_path):
    store = RolloutStore(f"sqlite:///{tmp_path / 's.db'}")
    old = datetime.now(timezone.utc) - timedelta(hours=1)
    store.add_records(group("c", 0, [True, False, True], version=0, created_at=old)[:2])
    batch, cursor = read_post_batch(store, DataCursor(), "rft", 8, current_version=0, selection=selection(wait=60))
    assert batch is None and cursor.records_skipped_other == 2 and cursor.store_after_seq == 2
