"""Rolling out one batch of a campaign, with no broker: generate tasks, sample, verify, write records.

The Celery task is a thin wrapper around `rollout_batch`; everything here runs and is tested in one process.
Outcomes are three-state: a verifier that could not judge (the sandbox failed) is retried a bounded number of
times, counted, and stored as `infra_error`, never as a fail.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from verifarm.envs.base import MultiTurnFamily, Task, TaskFamily, Verdict
from verifarm.envs.catalog import FamilyCache
from verifarm.policy.params import SamplingParams
from verifarm.rollout.campaign import CampaignSpec, PlannedTask, plan_task
from verifarm.rollout.metrics import observe_batch
from verifarm.rollout.store import RolloutRecord, RolloutStore, content_hash_for, group_id_for, record_id_for
from verifarm.rollout.verdict_cache import CACHED_DETAIL, CachedVerdict, VerdictCache, verdict_key


class Sample(Protocol):
    """What a policy returns per sample (`verifarm.policy.sampling.Completion` has this shape)."""

    # Read, never set: properties, so that frozen dataclasses (read-only fields) match them too.
    @property
    def text(self) -> str: ...

    @property
    def token_ids(self) -> Any: ...

    @property
    def logprobs(self) -> Any: ...

    @property
    def policy_version(self) -> int | None: ...


class TaskSampler(Protocol):
    """A policy as the farm uses it: n samples for each task, outer list per task."""

    @property
    def name(self) -> str: ...

    def sample_tasks(
        self, tasks: list[Task], n: int, sampling: SamplingParams, seed: int
    ) -> Sequence[Sequence[Sample]]: ...


@dataclass
class BatchReport:
    campaign_id: str
    task_indices: list[int]
    cancelled: bool = False
    tasks_rolled_out: int = 0
    tasks_skipped: int = 0  # already fully stored (a redelivered batch)
    records_written: int = 0
    passed: int = 0
    failed: int = 0
    infra_errors: int = 0
    infra_retries: int = 0
    verdicts_cached: int = 0  # completions judged by a verdict given before (the cache or earlier in the batch)
    sample_seconds: float = 0.0
    verify_seconds: float = 0.0
    policy_versions: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def storable_text(text: str) -> str:
    """The text with NUL characters replaced (U+FFFD): PostgreSQL text cannot hold them, and a byte-level
    policy can emit them. Applied before verifying, so what is stored is exactly what was judged."""
    return text.replace("\x00", "\ufffd")


_PLAIN = (str, int, float, bool, type(None))


def _storable_details(details: dict[str, Any]) -> dict[str, Any]:
    """Details as JSON-safe data with NULs replaced in every string (flat plain dicts skip the round trip)."""
    if all(isinstance(k, str) and isinstance(v, _PLAIN) for k, v in details.items()):
        return {k: storable_text(v) if isinstance(v, str) else v for k, v in details.items()}

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return storable_text(value)
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {storable_text(str(k)): clean(v) for k, v in value.items()}
        return value

    return clean(json.loads(json.dumps(details, default=str)))


def sampling_seed(spec: CampaignSpec, task_indices: Sequence[int]) -> int:
    """The sampler's seed for these tasks of the campaign: a rerun of the batch draws the same samples."""
    key = f"verifarm-sampling:{spec.seed}:{','.join(map(str, task_indices))}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def verify_with_retries(family: TaskFamily, task: Task, completion: str, retries: int) -> tuple[Verdict, int]:
    """The verdict, retrying infra errors up to `retries` times. Returns (verdict, retries used).

    A verifier that raises is the checker's failure, not the completion's: it counts as an infra error.
    """
    used = 0
    while True:
        try:
            verdict = family.verify(task, completion)
        except Exception as error:
            verdict = Verdict(
                0.0,
                False,
                f"verifier crashed: {type(error).__name__}: {error}"[:500],
                {"exception": type(error).__name__},
                infra_error=True,
            )
        if not verdict.infra_error or used >= retries:
            return verdict, used
        used += 1
        time.sleep(min(0.1 * 2**used, 2.0))  # a busy sandbox host often recovers within a moment


def _outcome(verdict: Verdict) -> str:
    if verdict.infra_error:
        return "infra_error"
    return "pass" if verdict.passed else "fail"


@dataclass
class Attempt:
    """The latest turn of one sample: what the policy saw, what it answered, and the verdict."""

    prompt: str
    sample: Sample
    verdict: Verdict
    verify_seconds: float
    turns: int = 1
    earlier: list[str] = field(default_factory=list)  # verdict reasons of the failed earlier turns
    cached: bool = False  # the latest verdict was reused, not computed

    def wants_another_turn(self, max_turns: int) -> bool:
        return not self.verdict.passed and not self.verdict.infra_error and self.turns < max_turns


def build_records(
    campaign_id: str,
    spec: CampaignSpec,
    plan: PlannedTask,
    family: TaskFamily,
    task: Task,
    attempts: Sequence[Attempt],
    sampler_name: str,
    sample_seconds_each: float,
) -> list[RolloutRecord]:
    """One record per sample of the task. A multi-turn sample is recorded at its last turn: the prompt is the
    observation of that turn (with the feedback), the completion that turn's answer."""
    env_version = plan.env_id.rsplit("-", 1)[-1]
    records = []
    for index, attempt in enumerate(attempts):
        verdict, sample = attempt.verdict, attempt.sample
        outcome = _outcome(verdict)
        prompt, completion = storable_text(attempt.prompt), storable_text(sample.text)
        details = _storable_details(verdict.details)
        if attempt.turns > 1:
            earlier = [storable_text(reason) for reason in attempt.earlier]
            details = {**details, "turns": attempt.turns, "earlier_reasons": earlier}
        if attempt.cached:
            details = {**details, CACHED_DETAIL: True}
        records.append(
            RolloutRecord(
                record_id=record_id_for(campaign_id, plan.task_index, index),
                campaign_id=campaign_id,
                env_id=plan.env_id,
                env_version=env_version,
                task_index=plan.task_index,
                task_seed=plan.seed,
                task_id=task.task_id,
                difficulty=task.difficulty,
                group_id=group_id_for(campaign_id, plan.task_index),
                group_size=spec.samples_per_task,
                sample_index=index,
                prompt=prompt,
                completion=completion,
                reward=verdict.reward if outcome != "infra_error" else 0.0,
                passed=outcome == "pass",
                reason=storable_text(verdict.reason[:2000]),
                outcome=outcome,
                policy_version=sample.policy_version,
                policy_name=sampler_name,
                verifier_version=family.verifier_version,
                sandbox_backend=verdict.details.get("sandbox_backend"),
                sample_seconds=sample_seconds_each * attempt.turns,
                verify_seconds=attempt.verify_seconds,
                content_hash=content_hash_for(plan.env_id, prompt, completion),
                token_ids=list(sample.token_ids) if sample.token_ids is not None else None,
                logprobs=[float(x) for x in sample.logprobs] if sample.logprobs is not None else None,
                drafted=getattr(sample, "drafted", None),
                details=details,
            )
        )
    return records


@dataclass(frozen=True)
class Judged:
    verdict: Verdict
    seconds: float
    cached: bool


@dataclass(frozen=True)
class ToVerify:
    plan: PlannedTask
    family: TaskFamily
    task: Task
    completion: str  # already storable_text


def _verify_timed(item: ToVerify, retries: int, report: BatchReport, extra_seconds: float = 0.0) -> Judged:
    started = time.perf_counter()
    verdict, used = verify_with_retries(item.family, item.task, item.completion, retries)
    report.infra_retries += used
    return Judged(verdict, time.perf_counter() - started + extra_seconds, cached=False)


def verify_all(
    items: Sequence[ToVerify], cache: VerdictCache | None, retries: int, report: BatchReport
) -> list[Judged]:
    """Verdicts for all items. With a cache, each distinct (env, verifier version, task, completion) is verified
    at most once: repeats within the items share one run, and a verdict any worker stored before is reused
    (for families whose verifier is not cheaper than that lookup). Without one, every item is verified."""
    if cache is None:
        return [_verify_timed(item, retries, report) for item in items]
    keys = [
        verdict_key(item.plan.env_id, item.plan.options, item.family.verifier_version, item.task, item.completion)
        for item in items
    ]
    shared = [not getattr(item.family, "cheap_verifier", False) for item in items]
    started = time.perf_counter()
    known = cache.lookup(key for key, share in zip(keys, shared) if share) if any(shared) else {}
    lookup_each = (time.perf_counter() - started) / max(sum(shared), 1)
    fresh: dict[str, Judged] = {}
    judged = []
    for key, item, share in zip(keys, items, shared):
        if key in known:
            judged.append(Judged(known[key], lookup_each, cached=True))
        elif key in fresh:
            judged.append(Judged(fresh[key].verdict, 0.0, cached=True))
        else:
            result = _verify_timed(item, retries, report, lookup_each if share else 0.0)
            if not result.verdict.infra_error:  # a sandbox failure is tried again next time, never reused
                fresh[key] = result
            judged.append(result)
    report.verdicts_cached += sum(j.cached for j in judged)
    new_shared = {key: item for key, item, share in zip(keys, items, shared) if share and key in fresh}
    if new_shared:
        cache.store(
            CachedVerdict(key, item.plan.env_id, item.family.verifier_version, fresh[key].verdict)
            for key, item in new_shared.items()
        )
    return judged


def _max_turns(family: TaskFamily) -> int:
    # Multi-turn families expose `max_turns` and `feedback(task, completion, verdict, turn, max_turns)`.
    return int(getattr(family, "max_turns", 1)) if hasattr(family, "feedback") else 1


def rollout_batch(
    store: RolloutStore,
    campaign_id: str,
    spec: CampaignSpec,
    task_indices: Sequence[int],
    sampler: TaskSampler,
    families: FamilyCache,
    infra_retries: int = 2,
    verdict_cache: VerdictCache | None = None,
) -> BatchReport:
    """Roll out the given tasks of a campaign and store their records; safe to run again (skips stored tasks).

    Multi-turn envs get up to their `max_turns`: a failed sample's next prompt is the env's feedback on it.
    All records of the batch are written in one transaction, so a task is either fully stored or not at all.
    With `verdict_cache`, identical completions of a task are verified once across the farm.
    """
    report = BatchReport(campaign_id, list(task_indices))
    if store.is_cancelled(campaign_id):
        report.cancelled = True
        return report
    n = spec.samples_per_task
    complete = store.complete_tasks(campaign_id, task_indices, n)
    todo = [i for i in task_indices if i not in complete]
    report.tasks_skipped = len(task_indices) - len(todo)
    if not todo:
        return report

    plans = [plan_task(spec, i) for i in todo]
    families_used = [families.get(p.env_id, p.options) for p in plans]
    tasks = [family.generate(p.seed, p.difficulty) for family, p in zip(families_used, plans)]
    seed = sampling_seed(spec, todo)

    started = time.perf_counter()
    samples = sampler.sample_tasks(tasks, n, spec.sampling, seed)
    report.sample_seconds = time.perf_counter() - started
    if len(samples) != len(tasks) or any(len(group) != n for group in samples):
        raise RuntimeError(f"policy returned {[len(g) for g in samples]} samples for {len(tasks)} tasks x {n}")
    judged = verify_all(
        [
            ToVerify(plan, family, task, storable_text(sample.text))
            for plan, family, task, group in zip(plans, families_used, tasks, samples)
            for sample in group
        ],
        verdict_cache,
        infra_retries,
        report,
    )
    attempts = [
        [
            Attempt(task.prompt, sample, j.verdict, j.seconds, cached=j.cached)
            for sample, j in zip(group, judged[t * n : (t + 1) * n])
        ]
        for t, (task, group) in enumerate(zip(tasks, samples))
    ]

    turn = 1
    while True:
        retry = [
            (t, s)
            for t, family in enumerate(families_used)
            for s in range(n)
            if attempts[t][s].wants_another_turn(_max_turns(family))
        ]
        if not retry:
            break
        turn += 1
        followups = []
        for t, s in retry:
            previous = attempts[t][s]
            # another turn only for a family with feedback (see _max_turns)
            observation = cast(MultiTurnFamily, families_used[t]).feedback(
                tasks[t],
                storable_text(previous.sample.text),
                previous.verdict,
                previous.turns,
                _max_turns(families_used[t]),
            )
            followups.append(replace(tasks[t], prompt=observation))
        started = time.perf_counter()
        answers = sampler.sample_tasks(followups, 1, spec.sampling, seed + turn)
        report.sample_seconds += time.perf_counter() - started
        if len(answers) != len(followups):
            raise RuntimeError(f"policy returned {len(answers)} answers for {len(followups)} follow-ups")
        judged = verify_all(
            [
                ToVerify(plans[t], families_used[t], tasks[t], storable_text(answer[0].text))
                for (t, _), answer in zip(retry, answers)
            ],
            verdict_cache,
            infra_retries,
            report,
        )
        for (t, s), followup, answer, j in zip(retry, followups, answers, judged, strict=True):
            previous = attempts[t][s]
            attempts[t][s] = Attempt(
                followup.prompt,
                answer[0],
                j.verdict,
                previous.verify_seconds + j.seconds,
                previous.turns + 1,
                [*previous.earlier, previous.verdict.reason],
                cached=j.cached,
            )

    per_sample = report.sample_seconds / sum(a.turns for group in attempts for a in group)
    records: list[RolloutRecord] = []
    for plan, family, task, group in zip(plans, families_used, tasks, attempts):
        records.extend(build_records(campaign_id, spec, plan, family, task, group, sampler.name, per_sample))
    report.verify_seconds = sum(r.verify_seconds for r in records)
    report.records_written = store.add_records(records)
    store.add_infra_retries(campaign_id, report.infra_retries)
    report.tasks_rolled_out = len(todo)
    report.passed = sum(r.outcome == "pass" for r in records)
    report.failed = sum(r.outcome == "fail" for r in records)
    report.infra_errors = sum(r.outcome == "infra_error" for r in records)
    report.policy_versions = sorted({r.policy_version for r in records if r.policy_version is not None})
    observe_batch(campaign_id, records, sampler.name, report.sample_seconds, report.infra_retries)
    return report
