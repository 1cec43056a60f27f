"""Re-verification: stored records scored again with the current verifiers, to find the verdicts a verifier change
flips. Nothing stored is changed: the report lists each flip beside the original outcome and verifier version.

A record's task is regenerated from what it stored (env id, task seed, difficulty) with its campaign's env options
(from the stored campaign spec, when the campaign is in the store); a record whose regenerated task id differs from
the stored one is skipped with the reason, never scored against another task.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import CampaignSpec, plan_task
from verifarm.rollout.store import RecordFilter, RolloutRecord, RolloutStore


@dataclass(frozen=True)
class Flip:
    """A record whose outcome under the current verifier differs from the stored one."""

    record_id: str
    campaign_id: str
    env_id: str
    task_id: str
    stored_outcome: str
    stored_verifier_version: str
    new_outcome: str
    new_verifier_version: str
    new_reason: str

    @property
    def direction(self) -> str:
        return f"{self.stored_outcome}->{self.new_outcome}"


@dataclass
class ReverifyReport:
    checked: int = 0
    flips: list[Flip] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (record id, why it was not re-scored)
    stored_versions: Counter = field(default_factory=Counter)  # (env id, verifier version) -> records
    current_versions: dict[str, str] = field(default_factory=dict)  # env id -> the verifier version now

    def directions(self) -> dict[str, int]:
        return dict(Counter(flip.direction for flip in self.flips))

    def as_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "flips": [flip.__dict__ | {"direction": flip.direction} for flip in self.flips],
            "directions": self.directions(),
            "skipped": [{"record_id": record_id, "reason": reason} for record_id, reason in self.skipped],
            "stored_versions": [
                {"env_id": env_id, "verifier_version": version, "records": n}
                for (env_id, version), n in sorted(self.stored_versions.items())
            ],
            "current_versions": self.current_versions,
        }


def _outcome(verdict: Any) -> str:
    return "infra_error" if verdict.infra_error else "pass" if verdict.passed else "fail"


class _TaskOptions:
    """Env options of a record's task, read from its campaign's stored spec (once per campaign)."""

    def __init__(self, store: RolloutStore) -> None:
        self.store = store
        self._specs: dict[str, CampaignSpec | None] = {}

    def of(self, record: RolloutRecord) -> dict[str, Any]:
        if record.campaign_id not in self._specs:
            row = self.store.get_campaign(record.campaign_id)
            self._specs[record.campaign_id] = None if row is None else CampaignSpec.model_validate(row.spec)
        spec = self._specs[record.campaign_id]
        if spec is None:
            return {}
        plan = plan_task(spec, record.task_index)
        return plan.options if plan.env_id == record.env_id else {}


def reverify(store: RolloutStore, flt: RecordFilter = RecordFilter(), sandbox_backend: str = "auto") -> ReverifyReport:
    """Scores every record matching ``flt`` with the current verifier of its env; reads the store, never writes."""
    report = ReverifyReport()
    families = FamilyCache(sandbox_backend)
    options = _TaskOptions(store)
    try:
        for record in store.iter_records(flt):
            report.stored_versions[(record.env_id, record.verifier_version)] += 1
            try:
                family = families.get(record.env_id, options.of(record))
                task = family.generate(record.task_seed, record.difficulty)
            except ValueError as error:  # an env id or options this version no longer knows
                report.skipped.append((record.record_id, f"cannot rebuild the task: {error}"))
                continue
            if task.task_id != record.task_id:
                report.skipped.append(
                    (record.record_id, f"the seed now gives task {task.task_id}, not the stored {record.task_id}")
                )
                continue
            verdict = family.verify(task, record.completion)
            report.checked += 1
            report.current_versions[record.env_id] = family.verifier_version
            outcome = _outcome(verdict)
            if outcome != record.outcome:
                report.flips.append(
                    Flip(
                        record.record_id,
                        record.campaign_id,
                        record.env_id,
                        record.task_id,
                        record.outcome,
                        record.verifier_version,
                        outcome,
                        family.verifier_version,
                        verdict.reason[:300],
                    )
                )
    finally:
        families.close()
    return report


def format_reverify(report: ReverifyReport) -> str:
    lines = [f"re-verified {report.checked} records with the current verifiers (stored records unchanged)"]
    for (env_id, version), n in sorted(report.stored_versions.items()):
        now = report.current_versions.get(env_id, "?")
        lines.append(f"  {env_id}: {n} stored by verifier {version}, now {now}")
    directions = report.directions()
    summary = ", ".join(f"{direction} {n}" for direction, n in sorted(directions.items())) or "none"
    lines.append(f"flips: {len(report.flips)} ({summary})")
    for flip in report.flips:
        lines.append(
            f"  {flip.record_id[:8]} {flip.campaign_id} {flip.task_id}: {flip.direction} "
            f"({flip.stored_verifier_version} -> {flip.new_verifier_version}): "
            f"{' '.join(flip.new_reason.split())[:120]}"
        )
    if report.skipped:
        lines.append(f"skipped: {len(report.skipped)}")
        lines.extend(f"  {record_id[:8]}: {reason}" for record_id, reason in report.skipped)
    return "\n".join(lines)
