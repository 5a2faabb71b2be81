"""The Trainforge Python SDK: HTTP only (httpx); see docs/python.md.

from trainforge import Client
client = Client()
job = client.submit("examples/digits-mlp.yaml", set={"epochs": 5})
job.wait().status

``AsyncClient`` is the same for asyncio (trainforge/sdk/aio.py).
"""

from trainforge.sdk.aio import AsyncClient, AsyncDatasets, AsyncJob, AsyncSweep, AsyncSweeps
from trainforge.sdk.client import Client, Datasets, Sweep, Sweeps
from trainforge.sdk.errors import (
    AmbiguousId,
    ApiError,
    Conflict,
    InvalidInput,
    InvalidSpec,
    NotFound,
    ServerError,
    TrainforgeError,
    Unauthorized,
    Unreachable,
)
from trainforge.sdk.events import (
    CheckpointEvent,
    EndEvent,
    JobEvent,
    LogEvent,
    MetricPoint,
    MetricsEvent,
    OtherEvent,
    ProgressEvent,
    StatusEvent,
)
from trainforge.sdk.jobs import Job

__all__ = [
    "AmbiguousId",
    "ApiError",
    "AsyncClient",
    "AsyncDatasets",
    "AsyncJob",
    "AsyncSweep",
    "AsyncSweeps",
    "CheckpointEvent",
    "Client",
    "Conflict",
    "Datasets",
    "EndEvent",
    "InvalidInput",
    "InvalidSpec",
    "Job",
    "JobEvent",
    "LogEvent",
    "MetricPoint",
    "MetricsEvent",
    "NotFound",
    "OtherEvent",
    "ProgressEvent",
    "ServerError",
    "StatusEvent",
    "Sweep",
    "Sweeps",
    "TrainforgeError",
    "Unauthorized",
    "Unreachable",
]
