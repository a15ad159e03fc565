"""The FastAPI application. The runtime (MQTT, storage, registry) is created in the lifespan, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from server import __version__, collector
from server.api.fleet import fleet_api
from server.api.metrics import metrics
from server.api.people import people
from server.api.provisioning import provisioning
from server.api.reports import reports
from server.api.routes import router
from server.runtime import Runtime
from server.settings import Settings
from server.web.enroll_pages import enroll_pages
from server.web.fleet_pages import fleet_pages
from server.web.guard import Guard, redact_access_logs
from server.web.pages import pages
from server.web.sign_in import sign_in


def create_app(
    settings: Settings | None = None, runtime: Runtime | None = None, runtime_type: type[Runtime] = Runtime
) -> FastAPI:
    """Build the app. Pass a runtime to share one that is already running (the demo, tests); else one of
    `runtime_type` is made at start (`lobbywatch api`: one without ingest, over the scale-out's workers)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or runtime_type(settings or Settings())
        if owned:
            app.state.runtime.start()
        with collector.serving() if owned else nullcontext():
            try:
                yield
            finally:
                if owned:
                    app.state.runtime.stop()

    app = FastAPIOffline(  # FastAPI, with Swagger UI's and ReDoc's files served from the package, not a CDN
        title="LobbyWatch",
        version=__version__,
        lifespan=lifespan,
        description="Queue, call-bell and facility monitoring for post-office branch lobbies.",
    )
    known = settings or (runtime.settings if runtime else None)
    app.add_middleware(Guard, https=bool(known and known.public_url.startswith("https://")))
    redact_access_logs()
    app.include_router(router)
    app.include_router(metrics)
    app.include_router(reports)
    app.include_router(provisioning)
    app.include_router(fleet_api)
    app.include_router(people)
    app.include_router(sign_in)
    app.include_router(pages)
    app.include_router(fleet_pages)
    app.include_router(enroll_pages)
    return app
