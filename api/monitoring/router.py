"""GET /metrics: the Prometheus text format (no API key; its own token when configured)."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from api.monitoring.collector import LedgerCollector
from api.problems import Problem, ProblemError

router = APIRouter(tags=["system"])

# A worker whose heartbeat is older than this many heartbeat intervals is not alive.
ALIVE_WITHIN_BEATS = 3


def scrape_registry(request: Request) -> CollectorRegistry:
    """One per app: the ledger collector, plus this process's HTTP metrics -- or, with
    PROMETHEUS_MULTIPROC_DIR, every API process's, summed by prometheus-client."""
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        settings = request.app.state.settings
        registry = CollectorRegistry(auto_describe=True)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry.register(_Process())
        alive = ALIVE_WITHIN_BEATS * settings.worker_heartbeat_seconds
        registry.register(LedgerCollector(request.app.state.session_factory, alive))
        request.app.state.metrics_registry = registry
    return registry


class _Process(Collector):
    """This process's default-registry metrics (HTTP, process, GC), single-process mode."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def _check_token(request: Request) -> None:
    token = request.app.state.settings.metrics_token
    if not token:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise ProblemError(
            401,
            "Unauthorized",
            "Send `Authorization: Bearer <TRAINFORGE_METRICS_TOKEN>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format (see docs/operations.md).",
        },
        401: {"model": Problem, "description": "TRAINFORGE_METRICS_TOKEN is set: send it."},
    },
)
def metrics(request: Request) -> Response:
    """Prometheus metrics: HTTP traffic per route, jobs and queues, workers alive."""
    _check_token(request)
    body = generate_latest(scrape_registry(request))
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
