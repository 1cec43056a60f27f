"""infra/prometheus.yml names every exporter the code serves, on the ports infra/farm.env.example sets."""

from __future__ import annotations

from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"


def test_scrape_config_covers_workers_trainer_dashboard_and_server():
    config = yaml.safe_load((INFRA / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"verifarm-workers", "verifarm-trainer", "verifarm-dashboard", "verifarm-serve"}
    ports = {
        name: {t.rsplit(":", 1)[1] for c in job["static_configs"] for t in c["targets"]} for name, job in jobs.items()
    }
    settings = dict(
        line.split("=", 1)
        for line in (INFRA / "farm.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert ports["verifarm-workers"] == {settings["VERIFARM_METRICS_WORKER_PORT"]}
    assert ports["verifarm-trainer"] == {settings["VERIFARM_TRAINER_METRICS_PORT"]}
    assert ports["verifarm-dashboard"] == {"8265"} and ports["verifarm-serve"] == {"8000"}
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in compose["services"]["prometheus"]["volumes"]
