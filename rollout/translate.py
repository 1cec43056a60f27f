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
from typing import Any

from verifarm.envs.program import extract_source
from verifarm.rollout.campaign import CampaignSpec, parse_spec, plan_task
from verifarm.rollout.store import RecordFilter, RolloutRecord, RolloutStore
from verifarm.rollout.translate_settings import SOURCE_ENV_IDS, TRANSLATE_ENV_ID, SourceProgram, TranslateSettings
from verifarm.sandbox.languages import get_language


def _source_language(record: RolloutRecord, options: dict[str, Any]) -> str:
    if record.env_id.startswith("verifarm/CProgram"):
        return "c"
    return get_language(record.details.get("language") or options.get("language", "python")).name


def find_sources(store: RolloutStore, settings: TranslateSettings) -> list[SourceProgram]:
    """The passing, distinct program records the settings select, oldest first."""
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
    data = {"envs": [{"env_id": TRANSLATE_ENV_ID}], "tasks": 1, **fields, "translate": translate}
    return with_sources(parse_spec(data), store)


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
