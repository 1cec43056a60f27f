"""The dashboard's `/metrics`: the farm as the store and broker see it, read at scrape time (so one scrape
target covers a farm whose workers cannot be scraped one by one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from verifarm.rollout.broker import queue_keys
from verifarm.rollout.campaign import status_from_store
from verifarm.rollout.metrics import QueueDepthCollector
from verifarm.rollout.store import RolloutStore


class CampaignCollector:
    """`verifarm_campaign_records{campaign,outcome}` and `verifarm_campaign_expected_records` of running campaigns."""

    def __init__(self, store: RolloutStore):
        self.store = store

    def collect(self):
        records = GaugeMetricFamily(
            "verifarm_campaign_records", "records stored so far by campaign and outcome", labels=["campaign", "outcome"]
        )
        expected = GaugeMetricFamily(
            "verifarm_campaign_expected_records", "records a campaign will hold when done", labels=["campaign"]
        )
        for row in self.store.list_campaigns():
            st = status_from_store(self.store, row.campaign_id)
            if st.state != "running":
                continue
            for outcome, n in (("pass", st.passed), ("fail", st.failed), ("infra_error", st.infra_errors)):
                records.add_metric([st.campaign_id, outcome], n)
            expected.add_metric([st.campaign_id], st.expected)
        return [records, expected]


def farm_registry(store: RolloutStore, broker_url: str | None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CampaignCollector(store))
    if broker_url:
        registry.register(QueueDepthCollector(broker_url, queue_keys()))
    return registry
