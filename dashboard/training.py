"""Training curves (the trainer's TensorBoard scalars and stored evaluations) and the policy versions."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from fastapi import APIRouter, Depends, Request

from verifarm.dashboard import deps
from verifarm.dashboard.charts import Series, line_chart
from verifarm.policy.registry import CheckpointRegistry
from verifarm.rollout.store import RolloutStore
from verifarm.trainer.metrics import read_scalars

router = APIRouter()

# `<env>/d<difficulty>/pass@<k>`, as `EvalReport.metrics()` names them.
_PASS_AT = re.compile(r"^(?P<env>.+)/d(?P<difficulty>\d+)/pass@(?P<k>\d+)$")


def evaluations(store: RolloutStore) -> dict[int, dict[str, float]]:
    """Each version's stored metrics (a later evaluation of the same name wins)."""
    by_version: dict[int, dict[str, float]] = defaultdict(dict)
    for entry in store.metrics():
        by_version[entry.policy_version].update(entry.metrics)
    return dict(by_version)


def pass_at_columns(by_version: dict[int, dict[str, float]]) -> list[str]:
    names = {name for metrics in by_version.values() for name in metrics if _PASS_AT.match(name)}

    def order(name: str):
        match = _PASS_AT.match(name)
        assert match is not None
        return match["env"], int(match["difficulty"]), int(match["k"])

    return sorted(names, key=order)


class TrainingScalars:
    """The trainer's `train/` scalars, read again only when an event file under the folder changed."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self._stamp: tuple = ()
        self._series: dict[str, list[tuple[int, float]]] = {}

    def __call__(self) -> dict[str, list[tuple[int, float]]]:
        files = sorted(self.log_dir.rglob("events.out.tfevents.*")) if self.log_dir.is_dir() else []
        stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
        if stamp != self._stamp:
            self._series = read_scalars(self.log_dir, prefix="train/") if files else {}
            self._stamp = stamp
        return self._series


def _series_by_suffix(scalars: dict[str, list[tuple[int, float]]], prefix: str) -> list[Series]:
    return [
        Series(tag.removeprefix(prefix) or tag.rsplit("/", 1)[-1], [(float(s), v) for s, v in points])
        for tag, points in sorted(scalars.items())
        if tag.startswith(prefix)
    ]


@router.get("/training")
def training_page(request: Request, store: RolloutStore = Depends(deps.store)):
    scalars = request.app.state.scalars()
    by_version = evaluations(store)
    versions = sorted(by_version)
    columns = pass_at_columns(by_version)

    def per_version(name: str) -> list[tuple[float, float]]:
        return [(float(v), by_version[v][name]) for v in versions if name in by_version[v]]

    charts = [
        line_chart(_series_by_suffix(scalars, "train/loss/"), "training loss by mode", "trainer step", "loss"),
        line_chart(
            _series_by_suffix(scalars, "train/schedule/"),
            "schedule mix (share of steps so far)",
            "trainer step",
            "share",
            y_range=(0.0, 1.0),
        ),
        line_chart(
            [Series(name, per_version(name)) for name in columns if name.endswith("/pass@1")],
            "held-out pass@1 by env and difficulty",
            "policy version",
            "pass@1",
            y_range=(0.0, 1.0),
            integer_x=True,
        ),
        line_chart(
            [Series(name, per_version(name)) for name in columns if not name.endswith("/pass@1")],
            "held-out pass@k by env and difficulty",
            "policy version",
            "pass@k",
            y_range=(0.0, 1.0),
            integer_x=True,
        ),
        line_chart(
            [Series("held-out loss", per_version("heldout_loss"))],
            "held-out pre-training loss",
            "policy version",
            "loss",
            integer_x=True,
        ),
        line_chart(
            [Series("mean", per_version("data_staleness_mean")), Series("max", per_version("data_staleness_max"))],
            "staleness of trained data",
            "policy version",
            "versions behind",
            integer_x=True,
        ),
        line_chart(
            _series_by_suffix(scalars, "train/tokens_per_second"), "training throughput", "trainer step", "tokens/s"
        ),
    ]
    return deps.render(
        request,
        "training.html",
        charts=charts,
        versions=versions,
        by_version=by_version,
        columns=columns,
        has_event_files=bool(scalars),
    )


@router.get("/policies")
def policies_page(
    request: Request, registry: CheckpointRegistry = Depends(deps.registry), store: RolloutStore = Depends(deps.store)
):
    by_version = evaluations(store)
    rows = []
    for info in reversed(registry.versions()):  # newest first
        drafter = info.metadata.get("drafter") or ("drafter/" if (info.path / "drafter").is_dir() else None)
        rows.append({"info": info, "metrics": by_version.get(info.version, {}), "drafter": drafter})
    return deps.render(request, "policies.html", rows=rows, columns=pass_at_columns(by_version))
