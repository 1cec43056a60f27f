"""The dashboard's FastAPI app: one router per page group, the store and registry opened once per app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from verifarm.dashboard import campaigns, deps, records, training, workers
from verifarm.dashboard.config import DashboardConfig
from verifarm.dashboard.farm_metrics import farm_registry
from verifarm.policy.registry import CheckpointRegistry
from verifarm.rollout.store import RolloutStore

# No inline script or style runs, and nothing loads from elsewhere: even markup that slipped past escaping
# could not execute.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_app(config: DashboardConfig) -> FastAPI:
    app = FastAPI(title="verifarm dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.store = RolloutStore(config.store_url)
    app.state.registry = CheckpointRegistry(config.checkpoint_dir)
    app.state.templates = deps.make_templates()
    app.state.metrics = farm_registry(app.state.store, config.broker_url)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    for module in (campaigns, records, training, workers):
        app.include_router(module.router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(HTTPException)
    async def error_page(request: Request, error: HTTPException):
        if request.url.path.startswith("/api/") or request.method != "GET":
            return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)
        return deps.render(request, "error.html", status_code=error.status_code, status=error.status_code,
                           message=str(error.detail))

    @app.get("/metrics")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(app.state.metrics), media_type=CONTENT_TYPE_LATEST)

    return app
