"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from api import problems
from api.db.session import session_factory
from api.queue import JobQueue, celery_queue
from api.routers import jobs, specs, system
from api.settings import Settings, get_settings


def _operation_id(route: APIRoute) -> str:
    # Clean generated clients: the operationId is the endpoint function's name.
    return route.name


def create_app(settings: Settings | None = None, queue: JobQueue | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Trainforge",
        version="1.0.0",
        description="A team-shared training backend: submit a validated job spec, "
        "follow its metrics, download its checkpoints.",
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.session_factory = session_factory(settings.resolved_database_url)
    app.state.queue = queue or celery_queue(settings)
    problems.install(app)
    for router in (jobs.router, specs.router, system.router):
        app.include_router(router)
    return app
