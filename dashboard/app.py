"""The dashboard's FastAPI app: one router per page group, the store and registry opened once per app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from verifarm.dashboard import campaigns, deps, records, training, workers
from verifarm.dashboard.config import DashboardConfig
from verifarm.dashboard.farm_metrics import farm_registry
from verifarm.dashboard.training import TrainingScalars
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


def security_headers() -> list[tuple[bytes, bytes]]:
    """`SECURITY_HEADERS` as ASGI raw headers."""
    return [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]


def create_app(config: DashboardConfig) -> ListingFirst:
    app = FastAPI(title="verifarm dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.store = RolloutStore(config.store_url)
    app.state.registry = CheckpointRegistry(config.checkpoint_dir)
    app.state.templates = deps.make_templates()
    app.state.frames = {}  # base.html around pages made in Python, by title (deps.frame)
    app.state.metrics = farm_registry(app.state.store, config.broker_url)
    app.state.scalars = TrainingScalars(config.tensorboard_dir)
    # Routes are matched in order: the dataset browser's pages come first (each route tried before a match costs
    # a few microseconds of a page that is timed against its query), the static files last.
    for module in (records, campaigns, training, workers):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

    @app.exception_handler(HTTPException)
    async def error_page(request: Request, error: HTTPException):
        if request.url.path.startswith("/api/") or request.method != "GET":
            return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)
        return deps.render(
            request, "error.html", status_code=error.status_code, status=error.status_code, message=str(error.detail)
        )

    @app.exception_handler(RequestValidationError)
    async def bad_query(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in error.errors())
        return await error_page(request, HTTPException(400, problems or "invalid request"))

    @app.get("/metrics")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(app.state.metrics), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(SecurityHeaders)
    return ListingFirst(app)


class ListingFirst:
    """The app as served: the dataset browser's listing (`GET /records`) straight from the server, every other
    request, and a listing that fails, through FastAPI's stack.

    The listing is timed against its own store query (the Dashboard latency section of benchmarks/README.md), and
    FastAPI's stack (error, telemetry, body-limit and exit-stack middleware, the routers' matching, the exception
    wrappers around `send`, then `SecurityHeaders`) cost about a tenth of a page. The listing reads nothing but
    its query string and answers nothing but a page, so it needs none of that: it gets the same security headers
    here, and any exception (a bad filter's 400 included) hands the request to the full app, which renders the
    error page as for any route (the listing only reads, so running it again is harmless).
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.headers = security_headers()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == records.LISTING_PATH and scope["method"] in ("GET", "HEAD"):
            scope["app"] = self.app  # what `request.app` reads, as Starlette sets it
            try:
                response = await records.records_page(Request(scope, receive))
            except Exception:  # the full app, below, renders the error page
                response = None
            if response is not None:
                response.raw_headers.extend(self.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every response (plain ASGI: no per-request task as `BaseHTTPMiddleware` has)."""

    def __init__(self, app) -> None:
        self.app = app
        self.headers = security_headers()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.headers if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
