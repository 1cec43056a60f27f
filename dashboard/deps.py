"""What every page needs, as FastAPI dependencies: the config, the store, the registry, the templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates

from verifarm.dashboard import charts
from verifarm.dashboard.config import DashboardConfig, without_secrets
from verifarm.dashboard.text import one_line, shown
from verifarm.policy.registry import CheckpointRegistry
from verifarm.rollout.store import RolloutStore


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def make_templates() -> Jinja2Templates:
    # Jinja2Templates autoescapes .html templates: every value from the store is inert markup-wise.
    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    env = templates.env
    env.filters.update(percent=_percent, number=_number, duration=_duration, one_line=one_line,
                       secret_free=without_secrets)
    env.globals.update(shown=shown, charts=charts)
    return templates


def config(request: Request) -> DashboardConfig:
    return request.app.state.config


def store(request: Request) -> RolloutStore:
    return request.app.state.store


def registry(request: Request) -> CheckpointRegistry:
    return request.app.state.registry


def render(request: Request, template: str, status_code: int = 200, **context: Any):
    app_state = request.app.state
    return app_state.templates.TemplateResponse(request, template, {"config": app_state.config, **context},
                                                status_code=status_code)
