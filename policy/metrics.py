"""Prometheus metrics of the completions server (`verifarm serve`), exposed on its own `/metrics`.

Each server owns its registry, so several servers in one process (tests) never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "verifarm_server_requests",
            "completion requests by route and HTTP status",
            ["route", "status"],
            registry=self.registry,
        )
        self.tokens = Counter("verifarm_server_completion_tokens", "tokens sampled for clients", registry=self.registry)
        self.sampling_seconds = Histogram(
            "verifarm_server_sampling_seconds",
            "time one request spent sampling (after waiting its turn)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.tokens_per_second = Gauge(
            "verifarm_server_tokens_per_second", "tokens/s of the last request", registry=self.registry
        )
        self.draft_tokens = Counter(
            "verifarm_server_draft_tokens",
            "speculative sampling's draft tokens, proposed and accepted (the acceptance rate is their ratio)",
            ["outcome"],
            registry=self.registry,
        )
        self.policy_version = Gauge(
            "verifarm_server_policy_version", "the policy version served last", registry=self.registry
        )

    def observe_drafts(self, proposed: int, accepted: int) -> None:
        """Draft tokens of speculative sampling: proposed by the drafter, and those the policy kept."""
        self.draft_tokens.labels("proposed").inc(proposed)
        self.draft_tokens.labels("accepted").inc(accepted)

    def observe_sampling(self, seconds: float, tokens: int, version: int) -> None:
        self.sampling_seconds.observe(seconds)
        self.tokens.inc(tokens)
        self.policy_version.set(version)
        if seconds > 0:
            self.tokens_per_second.set(tokens / seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
