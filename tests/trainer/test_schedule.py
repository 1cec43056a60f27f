"""The schedule, the staleness bound and the data cursor are pure: same inputs, same choices."""

import itertools
from collections import Counter

import pytest

from verifarm.trainer.config import TrainerConfig
from verifarm.trainer.schedule import (
    PRETRAIN,
    DataCursor,
    ScheduleConfig,
    is_fresh,
    next_corpus_indices,
    oldest_fresh_version,
    step_kind,
)


def test_one_pretrain_step_for_every_three_post_steps():
    schedule = ScheduleConfig(pretrain_steps=1, posttrain_steps=3, mode_weights={"rft": 1.0})
    kinds = [step_kind(s, schedule) for s in range(400)]
    assert Counter(kinds) == {PRETRAIN: 100, "rft": 300}
    # Spread evenly: never two pre-training steps in a row.
    assert all(not (a == b == PRETRAIN) for a, b in itertools.pairwise(kinds))


def test_modes_are_mixed_by_weight():
    schedule = ScheduleConfig(pretrain_steps=0, posttrain_steps=1, mode_weights={"rft": 3.0, "grpo": 1.0})
    counts = Counter(step_kind(s, schedule) for s in range(400))
    assert counts == {"rft": 300, "grpo": 100}


def test_pretrain_only_and_post_only():
    assert {step_kind(s, ScheduleConfig(1, 0)) for s in range(10)} == {PRETRAIN}
    assert {step_kind(s, ScheduleConfig(0, 2, {"grpo": 1.0})) for s in range(10)} == {"grpo"}


@pytest.mark.parametrize(
    "kwargs",
    [dict(pretrain_steps=0, posttrain_steps=0), dict(mode_weights={"ppo": 1.0}), dict(mode_weights={"rft": 0.0})],
)
def test_bad_schedule_is_refused(kwargs):
    with pytest.raises(ValueError):
        ScheduleConfig(**kwargs)


def test_staleness_bound():
    assert oldest_fresh_version(10, 2) == 8
    assert oldest_fresh_version(1, 5) == 0
    assert is_fresh(8, 10, 2) and not is_fresh(7, 10, 2)
    with pytest.raises(ValueError):
        oldest_fresh_version(3, -1)


def test_corpus_cursor_covers_each_epoch_once_and_resumes_exactly():
    cursor = DataCursor()
    seen = []
    for _ in range(5):
        indices, cursor = next_corpus_indices(cursor, corpus_size=10, batch_size=4, seed=3)
        seen.extend(indices)
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert (cursor.corpus_epoch, cursor.corpus_offset) == (2, 0)
    # A cursor restored from its saved form continues identically.
    restored = DataCursor.from_dict(cursor.to_dict())
    assert next_corpus_indices(restored, 10, 4, 3) == next_corpus_indices(cursor, 10, 4, 3)


def test_trainer_config_round_trips_through_yaml(tmp_path):
    config = TrainerConfig(batch_size=8, staleness_bound=1)
    config.to_yaml(tmp_path / "c.yaml")
    assert TrainerConfig.from_yaml(tmp_path / "c.yaml") == config


def test_trainer_config_refuses_distill_without_teacher():
    with pytest.raises(ValueError, match="teacher_version"):
        TrainerConfig(schedule=ScheduleConfig(0, 1, {"distill": 1.0}))
    with pytest.raises(ValueError, match="unknown"):
        TrainerConfig.from_dict({"batchsize": 3})
