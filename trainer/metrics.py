"""What the continual trainer reports as it goes: TensorBoard scalars (on by default), Weights & Biases (off
unless asked for and installed) and Prometheus gauges (served when VERIFARM_TRAINER_METRICS_PORT is set).

Scalar names are the dashboard's chart names: `train/loss/<mode>`, `train/tokens_per_second`,
`train/schedule/<mode>` (share of steps so far), `train/data_staleness` per step, and at each publish
`eval/<metric>` (held-out loss, pass@1 / pass@k by env and difficulty, staleness, records used) with the trainer
step as the x axis. The dashboard reads these event files back for its loss curves.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from verifarm.trainer.daemon import StepReport

logger = logging.getLogger("verifarm.trainer")

TENSORBOARD_SUBDIR = "tensorboard"  # beside the trainer's state folder: VERIFARM_HOME/trainer/tensorboard


class TelemetrySettings(BaseSettings):
    """VERIFARM_TRAINER_*: where the trainer's scalars go."""

    model_config = SettingsConfigDict(env_prefix="VERIFARM_TRAINER_", extra="ignore")

    tensorboard: bool = True
    tensorboard_dir: Path | None = None  # None: <state dir>/../tensorboard
    wandb: bool = False
    wandb_project: str = "verifarm"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"


def tensorboard_dir_for(state_dir: Path, settings: TelemetrySettings | None = None) -> Path:
    settings = settings or TelemetrySettings()
    return settings.tensorboard_dir or Path(state_dir).parent / TENSORBOARD_SUBDIR


class _PrometheusGauges:
    """Process-wide gauges (a process runs one trainer; a second one in a test reuses them)."""

    _made: _PrometheusGauges | None = None

    def __init__(self) -> None:
        from prometheus_client import Counter as PromCounter
        from prometheus_client import Gauge

        self.step = Gauge("verifarm_trainer_step", "the trainer's step count")
        self.version = Gauge("verifarm_trainer_policy_version", "the policy version being trained")
        self.loss = Gauge("verifarm_trainer_loss", "loss of the last step of each mode", ["mode"])
        self.steps = PromCounter("verifarm_trainer_steps", "steps taken, by mode", ["mode"])
        self.staleness = Gauge(
            "verifarm_trainer_data_staleness", "mean staleness (policy versions) of the last post-training batch"
        )
        self.tokens_per_second = Gauge("verifarm_trainer_tokens_per_second", "tokens/s of the last step")

    @classmethod
    def get(cls) -> _PrometheusGauges:
        if cls._made is None:
            cls._made = cls()
        return cls._made


class TrainerTelemetry:
    """One trainer's outlets; the per-step calls are cheap (the writer flushes from its own thread)."""

    def __init__(self, state_dir: Path, settings: TelemetrySettings | None = None):
        self.settings = settings or TelemetrySettings()
        self.gauges = _PrometheusGauges.get()
        self.writer = None
        self.log_dir = tensorboard_dir_for(state_dir, self.settings)
        if self.settings.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=10)
        self.wandb_run = None
        if self.settings.wandb:
            try:
                import wandb
            except ImportError:
                raise ValueError(
                    "VERIFARM_TRAINER_WANDB is set but wandb is not installed: "
                    "pip install 'verifarm[wandb]' or unset it"
                ) from None
            self.wandb_run = wandb.init(project=self.settings.wandb_project, dir=str(self.log_dir.parent))
        if self.settings.metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(self.settings.metrics_port, addr=self.settings.metrics_host)

    def _scalars(self, scalars: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)

    def on_step(self, report: StepReport, kind_counts: Counter, version: int) -> None:
        scalars = {f"train/loss/{report.kind}": report.loss}
        tokens = report.metrics.get("tokens")
        if tokens and report.seconds > 0:
            scalars["train/tokens_per_second"] = tokens / report.seconds
            self.gauges.tokens_per_second.set(tokens / report.seconds)
        if "data_staleness_mean" in report.metrics:
            scalars["train/data_staleness"] = report.metrics["data_staleness_mean"]
            self.gauges.staleness.set(report.metrics["data_staleness_mean"])
        total = sum(kind_counts.values())
        scalars.update({f"train/schedule/{kind}": n / total for kind, n in kind_counts.items()} if total else {})
        self._scalars(scalars, report.step)
        self.gauges.step.set(report.step + 1)
        self.gauges.version.set(version)
        self.gauges.loss.labels(report.kind).set(report.loss)
        self.gauges.steps.labels(report.kind).inc()

    def on_publish(self, version: int, step: int, metrics: dict[str, float]) -> None:
        self._scalars(
            {f"eval/{name}": value for name, value in metrics.items()} | {"eval/policy_version": version}, step
        )
        self.gauges.version.set(version)
        self.flush()

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def read_scalars(log_dir: Path, prefix: str = "") -> dict[str, list[tuple[int, float]]]:
    """Every scalar series under `log_dir` whose tag starts with `prefix`, as (step, value) pairs in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not Path(log_dir).is_dir():
        return {}
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
    accumulator.Reload()
    series: dict[str, list[tuple[int, float]]] = {}
    for tag in accumulator.Tags().get("scalars", []):
        if tag.startswith(prefix):
            points = {event.step: event.value for event in accumulator.Scalars(tag)}  # a resumed step: last wins
            series[tag] = sorted(points.items())
    return series
