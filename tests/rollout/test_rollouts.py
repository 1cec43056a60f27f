"""Rolling out batches in one process, no broker: real envs, real verifiers, a real tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

from verifarm.envs.arithmetic import ArithmeticFamily
from verifarm.envs.base import Task, Verdict
from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import parse_spec, plan_task
from verifarm.rollout.policy_source import CheckpointPolicySource
from verifarm.rollout.reference_policy import ReferencePolicy, corrupt
from verifarm.rollout.rollouts import Attempt, build_records, rollout_batch, verify_with_retries
from verifarm.rollout.store import RecordFilter, RolloutStore, record_id_for

MIX = [
    {"env_id": "verifarm/Addition-v0", "min_difficulty": 1, "max_difficulty": 3},
    {"env_id": "verifarm/Arithmetic-v0", "options": {"operations": ["-", "*"]}, "max_difficulty": 2},
    {"env_id": "verifarm/MathAnswer-v0"},
]


def new_campaign(store: RolloutStore, campaign_id: str, **spec_fields):
    spec = parse_spec({"envs": MIX, "tasks": 12, "samples_per_task": 3, **spec_fields})
    store.create_campaign(
        campaign_id, spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, spec.priority
    )
    return spec


def test_reference_rollout_over_several_envs(store: RolloutStore) -> None:
    spec = new_campaign(store, "ref", policy="reference", reference_corruption=0.4, batch_size=5)
    families = FamilyCache()
    policy = ReferencePolicy(spec.reference_corruption, spec.seed)
    reports = [
        rollout_batch(store, "ref", spec, spec.batch_range(b), policy, families) for b in range(spec.num_batches)
    ]
    assert sum(r.records_written for r in reports) == 12 * 3
    records = store.query(RecordFilter(campaign_id="ref"))
    assert len(records) == 36 and len({r.record_id for r in records}) == 36
    assert {r.env_id for r in records} == {m["env_id"] for m in MIX}
    for r in records:
        plan = plan_task(spec, r.task_index)
        task = families.get(plan.env_id, plan.options).generate(plan.seed, plan.difficulty)
        assert r.prompt == task.prompt and r.task_id == task.task_id and r.task_seed == plan.seed
        assert r.record_id == record_id_for("ref", r.task_index, r.sample_index)
        # The reference passes; a corrupted answer must not (its last digit differs).
        assert r.passed == (r.completion == task.reference)
        assert r.outcome == ("pass" if r.passed else "fail")
        assert r.policy_name == "reference" and r.policy_version is None
        assert r.group_size == 3 and r.group_id == f"ref/{r.task_index}"
    passed = sum(r.passed for r in records)
    assert 0 < passed < 36

    # Redelivery: running every batch again writes nothing and changes nothing.
    again = [rollout_batch(store, "ref", spec, spec.batch_range(b), policy, families) for b in range(spec.num_batches)]
    assert sum(r.records_written for r in again) == 0 and sum(r.tasks_skipped for r in again) == 12
    assert store.count(RecordFilter(campaign_id="ref")) == 36


def test_rollouts_are_reproducible_across_stores(tmp_path: Path) -> None:
    def run(path: Path) -> list[tuple]:
        with RolloutStore(f"sqlite:///{path}") as store:
            spec = new_campaign(store, "same", policy="reference", reference_corruption=0.5)
            rollout_batch(store, "same", spec, range(12), ReferencePolicy(0.5, spec.seed), FamilyCache())
            return [
                (r.record_id, r.prompt, r.completion, r.outcome, r.content_hash) for r in store.query(RecordFilter())
            ]

    assert run(tmp_path / "a.db") == run(tmp_path / "b.db")


def test_cancelled_campaign_writes_nothing(store: RolloutStore) -> None:
    spec = new_campaign(store, "stop", policy="reference")
    rollout_batch(store, "stop", spec, range(4), ReferencePolicy(), FamilyCache())
    store.set_cancelled("stop")
    report = rollout_batch(store, "stop", spec, range(4, 8), ReferencePolicy(), FamilyCache())
    assert report.cancelled and report.records_written == 0
    assert store.count(RecordFilter(campaign_id="stop")) == 4 * 3


def test_checkpoint_policy_and_reload_on_publish(tmp_path: Path, checkpoint_root: Path, publish_tiny) -> None:
    with RolloutStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        spec = new_campaign(
            store, "ckpt", policy="latest", batch_size=4, sampling={"temperature": 1.0, "max_new_tokens": 24}
        )
        source = CheckpointPolicySource(checkpoint_root)
        families = FamilyCache()

        def batch(b: int, policy="latest"):
            sampler = source.sampler(policy)
            return rollout_batch(store, "ckpt", spec, spec.batch_range(b), sampler, families)

        assert batch(0).policy_versions == [1]
        assert batch(1).policy_versions == [1] and source.loads == 1  # kept, not reloaded
        assert publish_tiny(checkpoint_root, seed=1) == 2
        assert batch(2).policy_versions == [2] and source.loads == 2  # newer version picked up between batches
        records = store.query(RecordFilter(campaign_id="ckpt"))
        assert len(records) == 12 * 3
        for r in records:
            assert r.policy_name == "checkpoint"
            assert r.token_ids and r.logprobs and len(r.token_ids) == len(r.logprobs) <= 24
            assert all(lp <= 0.0 for lp in r.logprobs)
            assert r.outcome in ("pass", "fail")  # random weights: almost surely fail, but never infra_error
        pinned = source.sampler_for_spec(spec.model_copy(update={"policy": 1}))
        assert pinned.version == 1 and source.loads == 3


def test_checkpoint_samples_are_reproducible(tmp_path: Path, checkpoint_root: Path) -> None:
    texts = []
    for name in ("a", "b"):
        with RolloutStore(f"sqlite:///{tmp_path / name}.db") as store:
            spec = new_campaign(store, "c", policy=1, sampling={"max_new_tokens": 16})
            sampler = CheckpointPolicySource(checkpoint_root).sampler(1)
            rollout_batch(store, "c", spec, range(3), sampler, FamilyCache())
            texts.append([r.completion for r in store.query(RecordFilter())])
    assert texts[0] == texts[1]


class FlakyChecker:
    """Addition whose checker fails (as a sandbox host would) for the first `failures` calls."""

    def __init__(self, failures: int, crash: bool = False) -> None:
        self.inner = ArithmeticFamily(operations=("+",), name="addition")
        self.failures, self.crash, self.calls = failures, crash, 0
        self.verifier_version = self.inner.verifier_version

    def verify(self, task: Task, completion: str) -> Verdict:
        self.calls += 1
        if self.calls <= self.failures:
            if self.crash:
                raise OSError("sandbox host unreachable")
            return Verdict(0.0, False, "sandbox failed to start", {"sandbox_backend": "docker"}, infra_error=True)
        return self.inner.verify(task, completion)


def test_infra_errors_are_retried_then_recorded_as_infra_error_never_fail() -> None:
    task = ArithmeticFamily(operations=("+",), name="addition").generate(seed=3, difficulty=2)

    recovers = FlakyChecker(failures=2)
    verdict, retries = verify_with_retries(recovers, task, task.reference, retries=2)
    assert verdict.passed and not verdict.infra_error and retries == 2 and recovers.calls == 3

    crashes = FlakyChecker(failures=1, crash=True)
    verdict, retries = verify_with_retries(crashes, task, task.reference, retries=1)
    assert verdict.passed and retries == 1

    broken = FlakyChecker(failures=10)
    verdict, retries = verify_with_retries(broken, task, task.reference, retries=2)
    assert verdict.infra_error and retries == 2 and broken.calls == 3

    spec = parse_spec(
        {"envs": [{"env_id": "verifarm/Addition-v0"}], "tasks": 1, "samples_per_task": 2, "policy": "reference"}
    )
    plan = plan_task(spec, 0)
    samples = ReferencePolicy().sample_tasks([task, task], 1)
    good, _ = verify_with_retries(FlakyChecker(0), task, task.reference, retries=0)
    attempts = [Attempt(task.prompt, samples[0][0], verdict, 0.1), Attempt(task.prompt, samples[1][0], good, 0.1)]
    records = build_records("c", spec, plan, broken, task, attempts, "reference", 0.0)
    assert [r.outcome for r in records] == ["infra_error", "pass"]
    assert records[0].reward == 0.0 and not records[0].passed and records[0].sandbox_backend == "docker"


def test_corrupt_changes_the_answer() -> None:
    import random

    text = "5+8+0=13 3\nAnswer: 13\n"
    wrong = corrupt(text, random.Random(0))
    assert wrong != text and wrong[:-2] == text[:-2]
    assert corrupt("no digits here", random.Random(0)) == "no digi"


def test_nul_characters_from_a_byte_level_policy_are_storable(store: RolloutStore) -> None:
    from verifarm.rollout.reference_policy import SampledText

    spec = new_campaign(store, "nul", policy="reference")
    plan = plan_task(spec, 0)
    family = FamilyCache().get(plan.env_id, plan.options)
    task = family.generate(plan.seed, plan.difficulty)
    text = "\x00garbage\x00"
    verdict, _ = verify_with_retries(family, task, text, retries=0)
    records = build_records(
        "nul",
        spec,
        plan,
        family,
        task,
        [Attempt(task.prompt, SampledText(text, [0, 1], [-1.0, -2.0], 1), verdict, 0.0)],
        "checkpoint",
        0.0,
    )
    assert store.add_records(records) == 1
    stored = store.query(RecordFilter(campaign_id="nul"))[0]
    assert stored.completion == "\ufffdgarbage\ufffd" and stored.outcome == "fail"


def test_multi_turn_env_gets_feedback_turns(tmp_path: Path) -> None:
    """CProgramMultiTurn through the real sandbox: a failed sample is asked again with the compiler/test feedback."""
    with RolloutStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        spec = parse_spec(
            {
                "envs": [{"env_id": "verifarm/CProgramMultiTurn-v0", "options": {"max_turns": 2}}],
                "tasks": 3,
                "samples_per_task": 2,
                "policy": "reference",
                "reference_corruption": 0.5,
                "seed": 3,
            }
        )
        store.create_campaign("mt", spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, 5)
        report = rollout_batch(store, "mt", spec, range(3), ReferencePolicy(0.5, spec.seed), FamilyCache())
        assert report.records_written == 6 and report.infra_errors == 0
        records = store.query(RecordFilter(campaign_id="mt"))
    second_turns = [r for r in records if r.details.get("turns") == 2]
    assert second_turns, "with half the answers corrupted, some sample must have needed a second turn"
    for r in records:
        assert r.sandbox_backend
        if r.details.get("turns") == 2:
            assert "Your previous program (attempt 1 of 2)" in r.prompt and len(r.details["earlier_reasons"]) == 1
        else:
            assert "Your previous program" not in r.prompt and r.passed  # only a pass ends after one turn


def test_endpoint_policy_samples_through_a_completions_server(tmp_path: Path, checkpoint_root: Path) -> None:
    """A campaign with an endpoint samples from a real `verifarm serve`-style server over HTTP."""
    from verifarm.policy.asgi import BackgroundServer
    from verifarm.policy.server import CompletionService, RegistryFollower, build_app

    server = BackgroundServer(build_app(CompletionService(RegistryFollower(checkpoint_root), "verifarm-policy")))
    try:
        with RolloutStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
            spec = new_campaign(store, "http", endpoint={"base_url": server.url}, sampling={"max_new_tokens": 16})
            source = CheckpointPolicySource(tmp_path / "no-checkpoints-here")  # the server holds the policy
            report = rollout_batch(store, "http", spec, range(4), source.sampler_for_spec(spec), FamilyCache())
            assert report.records_written == 4 * 3 and report.policy_versions == [1]
            records = store.query(RecordFilter(campaign_id="http"))
        assert {r.policy_name for r in records} == {"endpoint"}
        assert all(r.token_ids and len(r.token_ids) == len(r.logprobs) for r in records)
    finally:
        server.stop()
