"""Deterministic ids of what the store holds: the same campaign, task and sample give the same id on every
machine and every run, so a retried task cannot store a record twice."""

from __future__ import annotations

import hashlib
import json
import uuid

# A fixed namespace: record ids must be the same on every machine and every run.
_RECORD_NAMESPACE = uuid.UUID("6f1d3c1e-9a43-5b8e-8d5e-0c6a1f2b7e10")


def record_id_for(campaign_id: str, task_index: int, sample_index: int) -> str:
    """The id of sample `sample_index` of task `task_index`: a retried task recomputes the same one."""
    return str(uuid.uuid5(_RECORD_NAMESPACE, f"{campaign_id}/{task_index}/{sample_index}"))


def group_id_for(campaign_id: str, task_index: int) -> str:
    """All n samples of one task share this id (what group-relative training normalises over)."""
    return f"{campaign_id}/{task_index}"


def content_hash_for(env_id: str, prompt: str, completion: str) -> str:
    """Same env, prompt and completion -> same hash: the key for deduplicating datasets."""
    payload = json.dumps([env_id, prompt, completion], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
