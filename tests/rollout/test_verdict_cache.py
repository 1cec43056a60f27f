"""The verdict cache: an identical completion of the same task, env and verifier version is verified once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from verifarm.envs.arithmetic import ArithmeticFamily
from verifarm.envs.base import Task, Verdict
from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.app import WorkerRuntime
from verifarm.rollout.campaign import CampaignSpec, parse_spec, plan_task
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import BatchReport, ToVerify, rollout_batch, verify_all
from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.rollout.verdict_cache import CACHED_DETAIL, CachedVerdict, VerdictCache, verdict_key

MIX = [
    {"env_id": "verifarm/Addition-v0", "min_difficulty": 1, "max_difficulty": 3},
    {"env_id": "verifarm/Arithmetic-v0", "options": {"operations": ["-", "*"]}, "max_difficulty": 2},
]


class CountingFamily:
    """A real family whose verifier runs are counted (per completion text). It says its verifier is not cheap, so
    that the fast arithmetic checker exercises the shared cache as a sandboxed one does."""

    def __init__(self, inner: Any, calls: Counter, cheap: bool) -> None:
        self.inner, self.calls = inner, calls
        self.cheap_verifier = cheap

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def verify(self, task: Task, completion: str) -> Verdict:
        self.calls[completion] += 1
        return self.inner.verify(task, completion)


class CountingFamilies(FamilyCache):
    def __init__(self, cheap: bool = False) -> None:
        super().__init__()
        self.calls: Counter = Counter()
        self.cheap = cheap

    def get(self, env_id: str, options: dict[str, Any]) -> Any:
        return CountingFamily(super().get(env_id, options), self.calls, self.cheap)


def new_campaign(store: RolloutStore, campaign_id: str, **fields: Any) -> CampaignSpec:
    spec = parse_spec({"envs": MIX, "tasks": 6, "samples_per_task": 4, "policy": "reference", **fields})
    store.create_campaign(
        campaign_id, spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, spec.priority
    )
    return spec


def roll(store: RolloutStore, campaign_id: str, spec: CampaignSpec, families: FamilyCache, cache: Any) -> BatchReport:
    policy = ReferencePolicy(spec.reference_corruption, spec.seed)
    return rollout_batch(store, campaign_id, spec, range(spec.tasks), policy, families, 0, cache)


def test_repeats_within_a_batch_and_across_campaigns_are_verified_once(store: RolloutStore) -> None:
    cache = VerdictCache(store.engine)
    families = CountingFamilies()
    spec = new_campaign(store, "first", reference_corruption=0.3)
    first = roll(store, "first", spec, families, cache)
    records = store.query(RecordFilter(campaign_id="first"))
    distinct = {(r.task_index, r.completion) for r in records}
    # Every distinct completion of a task was verified exactly once; its repeats reused the verdict.
    assert sum(families.calls.values()) == len(distinct) < len(records) == 24
    assert first.verdicts_cached == 24 - len(distinct)
    assert sum(bool(r.details.get(CACHED_DETAIL)) for r in records) == first.verdicts_cached
    assert cache.count() == len(distinct)

    # The same tasks in another campaign: nothing is verified again, every record says its verdict was reused.
    families.calls.clear()
    store.create_campaign("second", spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, 5)
    second = roll(store, "second", spec, families, VerdictCache(store.engine))  # another worker, same database
    again = store.query(RecordFilter(campaign_id="second"))
    assert sum(families.calls.values()) == 0 and second.verdicts_cached == 24
    assert all(r.details[CACHED_DETAIL] is True for r in again)
    by_key = {(r.task_index, r.sample_index): r for r in records}
    for r in again:
        before = by_key[(r.task_index, r.sample_index)]
        assert (r.reward, r.passed, r.reason, r.outcome) == (
            before.reward,
            before.passed,
            before.reason,
            before.outcome,
        )


def test_a_cheap_verifier_reuses_repeats_within_the_batch_only(store: RolloutStore) -> None:
    cache = VerdictCache(store.engine)
    families = CountingFamilies(cheap=True)
    spec = new_campaign(store, "cheap", reference_corruption=0.3)
    report = roll(store, "cheap", spec, families, cache)
    records = store.query(RecordFilter(campaign_id="cheap"))
    assert sum(families.calls.values()) == len({(r.task_index, r.completion) for r in records}) < 24
    assert report.verdicts_cached == 24 - sum(families.calls.values()) and cache.count() == 0


def test_another_verifier_version_or_completion_is_a_miss(store: RolloutStore) -> None:
    cache = VerdictCache(store.engine)
    family = ArithmeticFamily(operations=("+",), name="addition")
    task = family.generate(seed=1, difficulty=2)
    key = verdict_key("verifarm/Addition-v0", {}, family.verifier_version, task, task.reference)
    assert cache.store([CachedVerdict(key, "verifarm/Addition-v0", "1", family.verify(task, task.reference))]) == 1
    assert cache.lookup([key])[key].passed
    others = [
        verdict_key("verifarm/Addition-v0", {}, family.verifier_version + ".1", task, task.reference),
        verdict_key("verifarm/Addition-v0", {}, family.verifier_version, task, task.reference + " "),
        verdict_key("verifarm/Addition-v0", {"digits": 3}, family.verifier_version, task, task.reference),
        verdict_key("verifarm/Addition-v0", {}, family.verifier_version, family.generate(2, 2), task.reference),
    ]
    assert len(set(others) | {key}) == 5 and cache.lookup(others) == {}
    # Storing the same key again keeps the first verdict and adds nothing.
    assert cache.store([CachedVerdict(key, "verifarm/Addition-v0", "1", Verdict(0.0, False, "other"))]) == 0
    assert cache.lookup([key])[key].passed


class BrokenSandbox:
    """Addition whose checker cannot judge (a sandbox host that failed) until `healed` is set."""

    def __init__(self) -> None:
        self.inner = ArithmeticFamily(operations=("+",), name="addition")
        self.verifier_version = self.inner.verifier_version
        self.healed, self.calls = False, 0

    def verify(self, task: Task, completion: str) -> Verdict:
        self.calls += 1
        if not self.healed:
            return Verdict(0.0, False, "sandbox failed to start", {"sandbox_backend": "docker"}, infra_error=True)
        return self.inner.verify(task, completion)


def test_infra_errors_are_never_cached(store: RolloutStore) -> None:
    cache = VerdictCache(store.engine)
    spec = parse_spec({"envs": [MIX[0]], "tasks": 1, "samples_per_task": 3, "policy": "reference"})
    plan = plan_task(spec, 0)
    family = BrokenSandbox()
    task = family.inner.generate(plan.seed, plan.difficulty)
    items = [ToVerify(plan, family, task, task.reference)] * 3

    judged = verify_all(items, cache, 0, BatchReport("c", [0]))
    # Each repeat asks the sandbox again: a failure says nothing about the completion.
    assert family.calls == 3 and all(j.verdict.infra_error and not j.cached for j in judged)
    assert cache.count() == 0 and cache.store([CachedVerdict("k", "e", "1", judged[0].verdict)]) == 0

    family.healed = True
    judged = verify_all(items, cache, 0, BatchReport("c", [0]))
    assert family.calls == 4 and [j.cached for j in judged] == [False, True, True]
    assert all(j.verdict.passed for j in judged) and cache.count() == 1


def test_the_worker_runtime_shares_verdicts_through_the_store(store_url: str, tmp_path: Path) -> None:
    """Two worker processes' runtimes on one store: the second never verifies what the first did (math answers,
    checked by math-verify: a verifier worth a lookup)."""
    farm = FarmConfig(broker_url="redis://127.0.0.1:1/0", store_url=store_url, checkpoint_dir=tmp_path / "ckpt")
    with RolloutStore(store_url) as store:
        spec = new_campaign(store, "a", batch_size=6, envs=[{"env_id": "verifarm/MathAnswer-v0"}])
        store.create_campaign("b", spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, 5)
    first, second = WorkerRuntime(farm), WorkerRuntime(farm)
    try:
        report_a = first.run_batch("a", 0)
        report_b = second.run_batch("b", 0)
    finally:
        first.store.close()
        second.store.close()
    # Reference answers: the 4 samples of a task are identical, so 3 of each 4 repeat within the batch.
    assert report_a["records_written"] == 24 and report_a["verdicts_cached"] == 18
    assert report_b["records_written"] == 24 and report_b["verdicts_cached"] == 24
