"""The FastAPI application factory."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api import problems
from api.admission import AdmissionControl, AdmissionGate
from api.checkpoints import router as checkpoints
from api.datasets import router as datasets
from api.db.session import PoolSize, session_factory
from api.guard import BodyGuard, key_checker
from api.joblogs import router as joblogs_router
from api.jobs import events_router as events
from api.jobs import router as jobs
from api.jobs import spec_schema_router as schemas
from api.jobs import specs_router as specs
from api.jobs import workers_router
from api.jobs.event_hub import EventHub
from api.jobs.list_cache import ListCache, WriteInvalidation
from api.monitoring import router as monitoring_router
from api.monitoring.http_metrics import HttpMetrics
from api.openapi_contract import OPENAPI_TAGS, contract_openapi
from api.predict import router as predict_router
from api.query_guard import QueryGuard, rules_for
from api.queue import JobQueue, celery_queue
from api.reports import router as reports_router
from api.security_headers import SecurityHeaders
from api.settings import Settings, get_settings
from api.storage import router as storage_router
from api.stream_guard import StreamGuard
from api.sweeps import router as sweeps_router
from api.system import router as system
from api.teams import router as admin
from api.teams.audit_middleware import AuditMiddleware
from api.ui import mount_dashboard
from api.webhooks import router as webhooks_router


def _operation_id(route: APIRoute) -> str:
    # Clean generated clients: the operationId is the endpoint function's name.
    return route.name


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The query guard's rules come from the OpenAPI document, ~0.5 s to build: in a thread
    # now, so no request waits for it (issue 28, 13). Once per process for one set of
    # operations (`rules_for`): a second app in the process (a test's) reuses the rules and
    # builds its document only if asked for it.
    warm_up = threading.Thread(target=rules_for, args=(app,), name="openapi-warm-up", daemon=True)
    if app.state.settings.api_openapi_warm_up:
        warm_up.start()
    yield
    if warm_up.is_alive():
        # A server stopped within a second of starting: a daemon thread still building
        # at interpreter exit is ended inside native code, which can abort the process
        # ("FATAL: exception not rethrown", seen once in the upload-memory probe).
        await anyio.to_thread.run_sync(warm_up.join)


def create_app(settings: Settings | None = None, queue: JobQueue | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        lifespan=_lifespan,
        title="Trainforge",
        version="1.0.0",
        description="A team-shared training backend: submit a validated job spec, "
        "follow its metrics, download its checkpoints.",
        generate_unique_id_function=_operation_id,
        separate_input_output_schemas=False,  # one schema per model: no `-Input`/`-Output`
        openapi_tags=OPENAPI_TAGS,
        docs_url=None,  # served by api/ui with the pinned Swagger UI (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    # Threads that may hold a connection at once: the request slots (one session
    # each) and the stream threads (SSE polls, download chunks, audit writes). The
    # pool holds that many, so no thread ever waits on it (issue 18).
    threads = settings.api_max_concurrent_requests + settings.api_stream_threads
    app.state.admission = AdmissionGate(
        limit=settings.api_max_concurrent_requests,
        max_waiting=settings.api_max_waiting_requests,
        wait_seconds=settings.api_queue_wait_seconds,
        threads=threads,
    )
    app.state.session_factory = session_factory(
        settings.resolved_database_url,
        settings.db_idle_in_transaction_seconds,
        settings.api_lock_timeout_seconds,
        PoolSize(size=threads + 2, timeout_seconds=settings.db_pool_timeout_seconds),
    )
    app.state.event_hub = EventHub(app.state.session_factory, events.POLL_SECONDS)
    app.state.queue = queue or celery_queue(settings)
    app.state.list_cache = ListCache()  # job-list pages reused while unchanged (issue 28, 13)
    problems.install(app)
    # Innermost: a write forgets the cached job-list pages before its client sees it done.
    app.add_middleware(WriteInvalidation, cache=app.state.list_cache)
    # A client that leaves an event stream is not an ASGI error (issue 28, 2).
    app.add_middleware(StreamGuard)
    app.add_middleware(
        BodyGuard,
        max_body_bytes=settings.max_body_bytes,
        key_check=key_checker(app.state.session_factory),  # a stranger's bad body is a 401
    )
    # Integer query parameters as the document says them (limit=%0C9 is a 422, issue 28).
    app.add_middleware(QueryGuard, key_check=key_checker(app.state.session_factory))
    app.add_middleware(
        AuditMiddleware,
        factory=app.state.session_factory,
        window_seconds=settings.audit_anonymous_window_seconds,
    )
    # A refused request costs no thread, no connection, no body read.
    app.add_middleware(AdmissionControl, gate=app.state.admission)
    # Counts every request, refused ones too (pure ASGI, no I/O; issue 15).
    app.add_middleware(HttpMetrics)
    # Outermost: nosniff, no-store and the dashboard's CSP on every answer (issue 28, 10).
    app.add_middleware(SecurityHeaders)
    app.include_router(admin.router)
    app.include_router(workers_router.router)  # /v1/admin/workers (issue 27)
    for router in (jobs.router, specs.router, system.router):
        app.include_router(router)
    app.include_router(schemas.router)
    app.include_router(datasets.router)
    app.include_router(checkpoints.router)
    app.include_router(predict_router.router)  # /v1/jobs/{id}/model, /predict (issue 14)
    app.include_router(events.router)
    app.include_router(joblogs_router.router)  # /v1/jobs/{id}/logs (issue 15)
    app.include_router(monitoring_router.router)  # /metrics (issue 15)
    app.include_router(webhooks_router.router)  # /v1/webhooks (issue 15)
    app.include_router(storage_router.jobs_router)  # DELETE /v1/jobs/{id} (issue 17)
    app.include_router(storage_router.admin_router)  # GET /v1/admin/teams/{id} (issue 17)
    app.include_router(sweeps_router.router)  # /v1/sweeps (issue 13)
    app.include_router(reports_router.router)  # /v1/jobs/{id}/report (issue 24)
    mount_dashboard(app)  # `/` → /ui/: the dashboard's static files (issue 12)
    # Problems declared, enums named: see api/openapi_contract.py (`make openapi`).
    app.openapi = lambda: contract_openapi(app)  # type: ignore[method-assign]
    return app
