"""Putting a campaign's batches on the broker: `submit` (store the campaign, enqueue every batch) and `requeue`
(enqueue again the batches that still miss records). The rest of the campaign API needs only the store."""

from __future__ import annotations

from verifarm.policy.remote_registry import open_registry
from verifarm.redaction import redact_url
from verifarm.rollout.broker import enqueue_batches, sender_app
from verifarm.rollout.campaign import CampaignSpec, check_campaign_id, new_campaign_id, parse_spec
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.store import CampaignRow, RolloutStore
from verifarm.rollout.translate import with_sources


def submit(spec: CampaignSpec, farm: FarmConfig, campaign_id: str | None = None) -> CampaignRow:
    """Store the campaign and enqueue one Celery task per batch, with the campaign's priority.

    The broker is checked before anything is stored, so a farm with no broker stores nothing.
    """
    check_policy_available(spec, farm)
    app = sender_app(farm)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.5)
    except Exception as error:
        raise ConnectionError(
            f"cannot reach the broker at {redact_url(farm.broker_url)}: {error}; nothing was stored"
        ) from None
    campaign_id = check_campaign_id(campaign_id) if campaign_id else new_campaign_id(spec)
    with RolloutStore(farm.store_url) as store:
        if spec.translate is not None and not spec.translate.sources:
            spec = with_sources(spec, store)
        row = store.create_campaign(
            campaign_id,
            spec.name,
            spec.model_dump(mode="json"),
            total_tasks=spec.tasks,
            samples_per_task=spec.samples_per_task,
            priority=spec.priority,
        )
    try:
        enqueue_batches(app, campaign_id, spec.priority, range(spec.num_batches))
    except Exception as error:
        raise RuntimeError(
            f"campaign {campaign_id} is stored but enqueueing its batches failed ({error}); "
            f"once the broker is back, run `verifarm campaign requeue {campaign_id}`"
        ) from error
    return row


def check_policy_available(spec: CampaignSpec, farm: FarmConfig) -> None:
    """Refuse a campaign whose policy no worker could load (from the same checkpoint folder, or fetched from the
    same registry server: a server out of reach raises ConnectionError)."""
    if spec.policy == "reference" or spec.endpoint is not None:
        return
    registry = open_registry(farm.checkpoint_dir, farm.registry_url)
    where = redact_url(farm.registry_url) if farm.registry_url else farm.checkpoint_dir
    if spec.policy == "latest":
        if registry.latest_version() is None:
            raise ValueError(
                f"policy 'latest': no good checkpoint in {where}; publish one first "
                "(or use policy: reference for a load test)"
            )
    elif spec.policy not in registry.published_versions() or not registry.inspect(spec.policy).ok:
        raise ValueError(
            f"policy version {spec.policy} is not a good checkpoint in {where} "
            f"(published: {registry.published_versions()})"
        )


def requeue(campaign_id: str, farm: FarmConfig) -> int:
    """Enqueue again every batch that still misses records (after a broker lost its queue). Returns how many.

    Safe at any time: batches are idempotent, so one enqueued twice only costs a skip.
    """
    with RolloutStore(farm.store_url) as store:
        row = store.get_campaign(campaign_id)
        if row is None:
            raise ValueError(f"no campaign {campaign_id!r}: `verifarm campaign list` shows the campaigns")
        spec = parse_spec(row.spec)
        missing = [
            b
            for b in range(spec.num_batches)
            if len(store.complete_tasks(campaign_id, spec.batch_range(b), spec.samples_per_task))
            < len(spec.batch_range(b))
        ]
    if missing and not row.cancelled:
        enqueue_batches(sender_app(farm), campaign_id, spec.priority, missing)
    return len(missing) if not row.cancelled else 0
