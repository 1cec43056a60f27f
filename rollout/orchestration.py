"""Whole campaigns run from Python: the loop's own scripts (the demo, the benchmarks, the tests) drive the farm here.

A campaign runner has one method, `run(spec) -> CampaignStatus`, which returns once every record is stored:
`InProcessCampaigns` rolls the batches out in this process with the farm's own rollout function (no broker),
`PoolCampaigns` submits the campaign to a worker pool through the broker and waits. `LocalFarm` is a farm in one
folder on embedded defaults (registry, SQLite store) that hands out the runner that fits: a `PrivatePool` (a
private Redis and a worker process) once one is started, this process otherwise.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Protocol

from verifarm.envs.catalog import FamilyCache
from verifarm.policy.registry import CheckpointRegistry
from verifarm.rollout.campaign import CampaignSpec, CampaignStatus, new_campaign_id, status, status_from_store
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.rollout.policy_source import CheckpointPolicySource
from verifarm.rollout.pool import WorkerPool
from verifarm.rollout.rollouts import BatchReport, TaskSampler, rollout_batch
from verifarm.rollout.store import RolloutStore
from verifarm.rollout.submission import submit
from verifarm.settings import Settings


def store_campaign(store: RolloutStore, spec: CampaignSpec, campaign_id: str | None = None) -> str:
    """Store the campaign's row (under `campaign_id`, or a new id) without enqueueing anything; returns its id."""
    campaign_id = campaign_id or new_campaign_id(spec)
    store.create_campaign(
        campaign_id, spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, spec.priority
    )
    return campaign_id


def roll_out_batches(
    store: RolloutStore,
    campaign_id: str,
    spec: CampaignSpec,
    sampler: TaskSampler,
    families: FamilyCache | None = None,
) -> list[BatchReport]:
    """Every batch of a stored campaign, in order, in this process: what the workers would do, one at a time."""
    families = FamilyCache() if families is None else families
    return [
        rollout_batch(store, campaign_id, spec, spec.batch_range(batch), sampler, families)
        for batch in range(spec.num_batches)
    ]


def roll_out_campaign(
    store: RolloutStore,
    spec: CampaignSpec,
    sampler: TaskSampler,
    campaign_id: str | None = None,
    families: FamilyCache | None = None,
) -> list[BatchReport]:
    """Create a campaign, then run its batches, in this process (no broker)."""
    campaign_id = store_campaign(store, spec, campaign_id)
    return roll_out_batches(store, campaign_id, spec, sampler, families)


class CampaignRunner(Protocol):
    def run(self, spec: CampaignSpec) -> CampaignStatus: ...


class InProcessCampaigns:
    """Runs a campaign's batches in this process with the farm's own rollout function (no broker, no pool)."""

    def __init__(self, store: RolloutStore, checkpoint_dir: Path, sandbox_backend: str = "auto") -> None:
        self.store = store
        self.policies = CheckpointPolicySource(checkpoint_dir)
        self.families = FamilyCache(sandbox_backend)

    def run(self, spec: CampaignSpec) -> CampaignStatus:
        # The sampler is chosen once per campaign: for "latest" that is the newest version at the start, as
        # nothing in this process publishes while the batches run.
        campaign_id = store_campaign(self.store, spec)
        roll_out_batches(self.store, campaign_id, spec, self.policies.sampler_for_spec(spec), self.families)
        return status_from_store(self.store, campaign_id)


class PoolCampaigns:
    """Runs a campaign on the worker pool through the broker and waits until every record is stored."""

    def __init__(self, farm: FarmConfig, pool: WorkerPool, timeout_seconds: float) -> None:
        self.farm, self.pool, self.timeout_seconds = farm, pool, timeout_seconds

    def run(self, spec: CampaignSpec) -> CampaignStatus:
        row = submit(spec, self.farm)
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            state = status(row.campaign_id, self.farm.store_url)
            if state.state == "done":
                return state
            self.pool.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"campaign {row.campaign_id} did not finish in {self.timeout_seconds:.0f}s "
                    f"({state.done}/{state.expected}); worker logs in {self.pool.log_dir}"
                )
            time.sleep(0.5)


class PrivatePool:
    """A private Redis under the settings' home and one `verifarm workers start` process on it, with `workers`
    pool processes; `stop()` always ends both."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.redis = EmbeddedRedis(settings.home / "redis")
        self.broker_url, self.redis_pid = self.redis.start()
        try:
            self.farm = FarmConfig.from_settings(settings, broker_url=self.broker_url)
            self.pool = WorkerPool(
                self.farm, settings.home / "logs", processes=1, concurrency=workers, name="demo"
            ).start()
        except BaseException:
            self.redis.stop(self.redis_pid)
            raise

    def campaigns(self, timeout_seconds: float) -> PoolCampaigns:
        return PoolCampaigns(self.farm, self.pool, timeout_seconds)

    def stop(self) -> None:
        try:
            self.pool.stop()
        finally:
            self.redis.stop(self.redis_pid)


FARM_MARKER = ".verifarm-demo"


def prepare_home(home: Path) -> None:
    """Empty the farm's folder, but only one that a previous run made (never a user's folder by mistake)."""
    if home.exists() and any(home.iterdir()):
        if not (home / FARM_MARKER).is_file():
            raise ValueError(f"{home} is not empty and was not made by `verifarm demo`; choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / FARM_MARKER).write_text("made by verifarm demo; wiped by the next run\n")


class LocalFarm:
    """A farm in one folder on embedded defaults (whatever the environment says): the checkpoint registry, the
    SQLite store, and a private worker pool once `start_pool` is called. `close()` stops the pool and the store."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.settings = Settings(home=home, redis_url=None, database_url=None, checkpoint_dir=None)
        self.registry = CheckpointRegistry(self.settings.checkpoints)
        self.store = RolloutStore(self.settings.store_url)
        self.pool: PrivatePool | None = None

    @classmethod
    def fresh(cls, home: Path) -> LocalFarm:
        """A farm in an emptied folder (see `prepare_home`)."""
        prepare_home(home)
        return cls(home)

    def start_pool(self, workers: int) -> PrivatePool:
        self.pool = PrivatePool(self.settings, workers)
        return self.pool

    def campaigns(self, timeout_seconds: float) -> CampaignRunner:
        """The pool's runner once a pool is started, else this process's."""
        if self.pool is None:
            return InProcessCampaigns(self.store, self.settings.checkpoints, self.settings.sandbox_backend)
        return self.pool.campaigns(timeout_seconds)

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            if self.pool is not None:
                self.pool.stop()

    def __enter__(self) -> LocalFarm:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
