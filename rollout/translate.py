"""The `translate` campaign kind: verified solutions from the store carried into other languages.

A translate campaign's tasks are the passing records of a source campaign or env (filtered like `data ls`, one per
distinct content), each paired with every target language other than its own. The sources are read from the
store once, when the campaign is made, and frozen into its spec, so task i stays a pure function of (spec, i) like
every campaign's: task i is ``verifarm/Translate-v0`` over source ``pairs[i]``, and any worker rebuilds it.

Each translation record keeps its lineage in ``details["lineage"]`` (source record id, source env, source and
target language, problem); `translation_records` filters on it, and `export_translation_pairs` writes one
(source program, translation) pair per passing translation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from verifarm.rollout.store import RecordFilter, RolloutRecord, RolloutStore

if TYPE_CHECKING:
    from verifarm.rollout.campaign import CampaignSpec, PlannedTask

TRANSLATE_ENV_ID = "verifarm/Translate-v0"
# Envs whose passing records are programs in a known language (their family is a ProgramFamily).
SOURCE_ENV_IDS = (
    "verifarm/Program-v0",
    "verifarm/ProgramMultiTurn-v0",
    "verifarm/CProgram-v0",
    "verifarm/CProgramMultiTurn-v0",
)


class SourceProgram(BaseModel):
    """One verified source solution, with what regenerates its problem and hidden tests."""

    model_config = ConfigDict(extra="forbid")

    record_id: str
    env_id: str
    options: dict[str, Any] = Field(default_factory=dict)
    seed: int
    difficulty: int
    language: str
    completion: str


class TranslateSettings(BaseModel):
    """Where the sources come from, which languages to translate into, and how hard to check."""

    model_config = ConfigDict(extra="forbid")

    source_campaign: str | None = None
    source_env: str | None = None
    target_languages: list[str] = Field(min_length=1)
    differential_inputs: int = Field(default=50, ge=50, le=10_000)
    max_sources: int | None = Field(default=None, ge=1)
    sources: list[SourceProgram] = Field(default_factory=list)  # frozen from the store when the campaign is made

    @field_validator("target_languages")
    @classmethod
    def _known_languages(cls, languages: list[str]) -> list[str]:
        from verifarm.sandbox.languages import get_language

        names = [get_language(language).name for language in languages]  # ValueError names the known ones
        if len(set(names)) != len(names):
            raise ValueError(f"target languages repeat: {languages}")
        return names

    @field_validator("source_env")
    @classmethod
    def _program_env(cls, env_id: str | None) -> str | None:
        if env_id is not None and env_id not in SOURCE_ENV_IDS:
            raise ValueError(f"source_env must be a program env ({', '.join(SOURCE_ENV_IDS)}), got {env_id!r}")
        return env_id

    def pairs(self) -> list[tuple[SourceProgram, str]]:
        """Every (source, target language) task of the campaign, in task order."""
        return [
            (source, target) for source in self.sources for target in self.target_languages if target != source.language
        ]


def _source_language(record: RolloutRecord, options: dict[str, Any]) -> str:
    if record.env_id.startswith("verifarm/CProgram"):
        return "c"
    from verifarm.sandbox.languages import get_language

    return get_language(record.details.get("language") or options.get("language", "python")).name


def find_sources(store: RolloutStore, settings: TranslateSettings) -> list[SourceProgram]:
    """The passing, distinct program records the settings select, oldest first."""
    from verifarm.rollout.campaign import parse_spec, plan_task

    if settings.source_campaign is None and settings.source_env is None:
        raise ValueError("a translate campaign needs source_campaign or source_env to read its sources from")
    flt = RecordFilter(campaign_id=settings.source_campaign, env_id=settings.source_env, passed=True, dedupe=True)
    specs: dict[str, CampaignSpec | None] = {}
    sources = []
    for record in store.iter_records(flt):
        if record.env_id not in SOURCE_ENV_IDS:
            continue
        if record.campaign_id not in specs:
            row = store.get_campaign(record.campaign_id)
            specs[record.campaign_id] = parse_spec(row.spec) if row is not None else None
        spec = specs[record.campaign_id]
        if spec is None:
            continue
        options = plan_task(spec, record.task_index).options  # the env options the record's task was made with
        sources.append(
            SourceProgram(
                record_id=record.record_id,
                env_id=record.env_id,
                options=options,
                seed=record.task_seed,
                difficulty=record.difficulty,
                language=_source_language(record, options),
                completion=record.completion,
            )
        )
        if settings.max_sources is not None and len(sources) >= settings.max_sources:
            break
    return sources


def with_sources(spec: CampaignSpec, store: RolloutStore) -> CampaignSpec:
    """The spec with its sources frozen from the store and its task count set to the translation pairs."""
    from verifarm.rollout.campaign import parse_spec

    if spec.translate is None:
        raise ValueError("not a translate campaign")
    settings = spec.translate.model_copy(update={"sources": find_sources(store, spec.translate)})
    tasks = len(settings.pairs())
    if tasks == 0:
        raise ValueError(
            "no passing program records to translate match the translate settings "
            f"(campaign {settings.source_campaign!r}, env {settings.source_env!r})"
        )
    data = spec.model_dump(mode="json")
    data.update(tasks=tasks, translate=settings.model_dump(mode="json"), envs=[{"env_id": TRANSLATE_ENV_ID}])
    return parse_spec(data)


def translation_spec(store: RolloutStore, translate: dict[str, Any], **fields: Any) -> CampaignSpec:
    """A ready translate campaign spec (sources frozen) from translate settings and other spec fields."""
    from verifarm.rollout.campaign import parse_spec

    data = {"envs": [{"env_id": TRANSLATE_ENV_ID}], "tasks": 1, **fields, "translate": translate}
    return with_sources(parse_spec(data), store)


def plan_translation(spec: CampaignSpec, task_index: int) -> PlannedTask:
    """Task `task_index` of a translate campaign: the Translate-v0 family over one (source, target) pair."""
    from verifarm.rollout.campaign import PlannedTask

    assert spec.translate is not None
    pairs = spec.translate.pairs()
    if not 0 <= task_index < len(pairs):
        raise ValueError(f"task index {task_index} outside the campaign's {len(pairs)} translation pairs")
    source, target = pairs[task_index]
    options = {
        "target_language": target,
        "source_env_id": source.env_id,
        "source_options": source.options,
        "source_seed": source.seed,
        "source_difficulty": source.difficulty,
        "source_completion": source.completion,
        "source_record_id": source.record_id,
        "differential_inputs": spec.translate.differential_inputs,
    }
    return PlannedTask(task_index, TRANSLATE_ENV_ID, options, source.difficulty, source.seed)


def lineage_of(record: RolloutRecord) -> dict[str, Any] | None:
    lineage = record.details.get("lineage")
    return lineage if isinstance(lineage, dict) else None


def translation_records(
    store: RolloutStore,
    flt: RecordFilter = RecordFilter(),
    source_language: str | None = None,
    target_language: str | None = None,
    source_record_id: str | None = None,
) -> Iterator[RolloutRecord]:
    """Translation records matching the store filter and the lineage filters, in store order."""
    wanted = {
        "source_language": source_language,
        "target_language": target_language,
        "source_record_id": source_record_id,
    }
    for record in store.iter_records(flt):
        lineage = lineage_of(record)
        if lineage is None:
            continue
        if all(value is None or lineage.get(key) == value for key, value in wanted.items()):
            yield record


def export_translation_pairs(
    store: RolloutStore,
    path: Path | str,
    flt: RecordFilter = RecordFilter(passed=True),
    source_language: str | None = None,
    target_language: str | None = None,
) -> int:
    """Write one JSON line per translation (default: passing ones) with its source program; returns the count."""
    from verifarm.envs.program import extract_source

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for record in translation_records(store, flt, source_language, target_language):
            lineage = lineage_of(record) or {}
            source = store.get_record(lineage.get("source_record_id", ""))
            handle.write(
                json.dumps(
                    {
                        "problem": lineage.get("problem"),
                        "source_language": lineage.get("source_language"),
                        "target_language": lineage.get("target_language"),
                        "source_record_id": lineage.get("source_record_id"),
                        "translation_record_id": record.record_id,
                        "passed": record.passed,
                        "source": extract_source(source.completion) if source is not None else None,
                        "translation": extract_source(record.completion),
                        "prompt": record.prompt,
                    },
                    sort_keys=True,
                )
                + "\n"
            )
            count += 1
    return count
