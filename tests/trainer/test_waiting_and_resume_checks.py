"""A trainer with no post-training data says what it waits for and pre-trains meanwhile, `max_steps` bounds it
whatever it waits on, and a saved state that does not fit its config, store or state folder is refused in
one line that names the difference and how to start fresh."""

from __future__ import annotations

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from verifarm.cli import app
from verifarm.policy.registry import CheckpointRegistry
from verifarm.rollout.store import RolloutStore
from verifarm.trainer.daemon import ContinualTrainer, TrainerStateMismatch
from verifarm.trainer.schedule import ScheduleConfig

from .trainer_helpers import run_campaign, small_trainer_config, store_url


@pytest.fixture(autouse=True)
def quiet_progress_bars():
    """The `verifarm` script turns Hugging Face progress bars off (an environment variable read at import); a test
    process may have imported the library before, so they are turned off here as the script would have them."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    yield
    transformers_logging.enable_progress_bar()


def make_trainer(home, config, store=None, fresh=False, state_dir=None):
    return ContinualTrainer(
        config,
        CheckpointRegistry(home / "checkpoints"),
        store or RolloutStore(store_url(home)),
        state_dir or home / "trainer" / "state",
        fresh=fresh,
    )


def test_with_no_rollouts_it_says_what_it_waits_for_and_pre_trains_meanwhile(farm_home):
    config = small_trainer_config(
        schedule=ScheduleConfig(1, 3, {"rft": 1.0}), evaluate_on_publish=False, publish_every=1000
    )
    trainer = make_trainer(farm_home, config)
    heard: list[str | None] = []
    steps = []
    published = trainer.run(max_steps=5, on_wait=heard.append, on_step=steps.append)
    assert len(steps) == 5 and {s.kind for s in steps} == {"pretrain"}
    assert sum(s.while_waiting for s in steps) >= 3, "the post-training slots were filled by pre-training"
    assert heard and heard[0] == "passing rollouts of verifarm/Addition-v0: 0 so far"
    assert published and published[-1].version == 2, "the steps taken while waiting are published on the way out"


def test_a_pure_post_training_schedule_polls_and_max_steps_still_bounds_it(farm_home):
    config = small_trainer_config(
        schedule=ScheduleConfig(0, 1, {"rft": 1.0}), evaluate_on_publish=False, idle_poll_seconds=0.05
    )
    trainer = make_trainer(farm_home, config)
    heard: list[str | None] = []
    assert trainer.run(max_steps=3, on_wait=heard.append) == []
    assert trainer.step_index == 0 and len(heard) == 3


def test_the_wait_message_counts_fresh_passing_rollouts_and_names_the_oldest_version(farm_home):
    from verifarm.rollout.store import RecordFilter

    run_campaign(farm_home, "round", tasks=8, samples=4, policy_version=1)
    config = small_trainer_config(
        schedule=ScheduleConfig(0, 1, {"rft": 1.0}), evaluate_on_publish=False, staleness_bound=0
    )
    trainer = make_trainer(farm_home, config)
    with RolloutStore(store_url(farm_home)) as store:
        passing = store.count(RecordFilter(passed=True))
    assert passing > 0
    assert trainer.waiting_for() == f"passing rollouts of verifarm/Addition-v0: {passing} so far"
    trainer.version = 3  # as if v2 and v3 were published since: v1's records are stale under staleness_bound=0
    assert trainer.waiting_for() == "passing rollouts of verifarm/Addition-v0 newer than v2: 0 so far"


@pytest.fixture
def trained_home(farm_home):
    """v2 published by a trainer that read some rollouts, with its state saved."""
    run_campaign(farm_home, "round", tasks=8, samples=4, policy_version=1)
    config = small_trainer_config(evaluate_on_publish=False)
    trainer = make_trainer(farm_home, config)
    trainer.run(until_idle=True, max_steps=4)
    assert trainer.version == 2 and trainer.cursor.store_after_seq is not None
    trainer.store.close()
    return farm_home, config


def test_a_state_written_under_another_corpus_is_refused_naming_the_setting(trained_home):
    home, config = trained_home
    other = replace(config, corpus=replace(config.corpus, arithmetic_documents=300))
    with pytest.raises(TrainerStateMismatch) as refused:
        make_trainer(home, other)
    message = str(refused.value)
    assert "corpus.arithmetic_documents=400 (now 300)" in message and "--fresh" in message
    assert "\n" not in message
    fresh = make_trainer(home, other, fresh=True)
    assert fresh.step_index == 0 and fresh.version == 2


def test_a_state_that_read_another_store_is_refused(trained_home, tmp_path):
    home, config = trained_home
    with pytest.raises(TrainerStateMismatch, match="it is another store"):
        make_trainer(home, config, store=RolloutStore(f"sqlite:///{tmp_path / 'empty.db'}"))


def test_a_state_missing_from_the_state_folder_is_refused(trained_home, tmp_path):
    home, config = trained_home
    with pytest.raises(TrainerStateMismatch, match="is not in"):
        make_trainer(home, config, state_dir=tmp_path / "elsewhere")


def test_train_run_reports_a_mismatch_in_one_line_and_changes_nothing(trained_home, tmp_path):
    home, config = trained_home
    other = replace(config, seed=5)
    config_path = tmp_path / "other.yaml"
    other.to_yaml(config_path)
    result = CliRunner().invoke(
        app, ["train", "run", "--config", str(config_path), "--max-steps", "1"], env={"VERIFARM_HOME": str(home)}
    )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "seed=0 (now 5)" in lines[0] and "--fresh" in lines[0]
    assert CheckpointRegistry(home / "checkpoints").latest_version() == 2


def test_train_start_says_why_a_daemon_that_refuses_its_state_exited(trained_home, tmp_path):
    home, config = trained_home
    config_path = tmp_path / "other.yaml"
    replace(config, seed=5).to_yaml(config_path)
    result = CliRunner().invoke(app, ["train", "start", "--config", str(config_path)], env={"VERIFARM_HOME": str(home)})
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "exited at once" in lines[0] and "seed=0 (now 5)" in lines[0], result.stderr
    assert not (home / "trainer" / "trainer.pid").exists()
    status = CliRunner().invoke(app, ["train", "status", "--json"], env={"VERIFARM_HOME": str(home)})
    assert '"running": false' in status.stdout
