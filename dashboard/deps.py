"""What every page needs, as FastAPI dependencies: the config, the store, the registry, the templates."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates

from verifarm.dashboard import charts
from verifarm.dashboard.config import DashboardConfig
from verifarm.dashboard.text import one_line, shown
from verifarm.policy.registry import CheckpointRegistry
from verifarm.redaction import redact_url
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
    # Autoescaping for .html templates (as Jinja2Templates sets it up): every value from the store is inert
    # markup-wise. The templates ship with the package, so no page needs to stat their files for changes.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(),
        auto_reload=False,
    )
    templates = Jinja2Templates(env=env)
    # Every page shows the store's URL (the same few URLs): parsed once, not on each page.
    secret_free = lru_cache(maxsize=16)(redact_url)
    env.filters.update(percent=_percent, number=_number, duration=_duration, one_line=one_line, secret_free=secret_free)
    env.globals.update(shown=shown, charts=charts)
    return templates


# The dependencies are `async def` although they only read app state: FastAPI runs a plain `def` dependency in its
# thread pool, and a hop to a worker thread and back for each one costs more than the page's own query.
async def config(request: Request) -> DashboardConfig:
    return request.app.state.config


async def store(request: Request) -> RolloutStore:
    return request.app.state.store


async def registry(request: Request) -> CheckpointRegistry:
    return request.app.state.registry


_CONTENT = "\ue001"  # a private-use character: where a page's content goes in its frame


def frame(request: Request, title: str) -> tuple[str, str]:
    """base.html's markup before and after a page's content, for a page made in Python. What the layout shows (the
    config's store URL and refresh period) is fixed for the app's life, so it is rendered once per title."""
    app_state = request.app.state
    frames: dict[str, tuple[str, str]] = app_state.frames
    if title not in frames:
        page = app_state.templates.get_template("frame.html").render(
            config=app_state.config, title=title, content=_CONTENT
        )
        head, tail = page.split(_CONTENT)
        frames[title] = head, tail
    return frames[title]


def render(request: Request, template: str, status_code: int = 200, **context: Any):
    app_state = request.app.state
    return app_state.templates.TemplateResponse(
        request, template, {"config": app_state.config, **context}, status_code=status_code
    )
