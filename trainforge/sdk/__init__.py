"""The Trainforge Python SDK: HTTP only (httpx); see docs/python.md.

from trainforge import Client
client = Client()
job = client.submit("examples/digits-mlp.yaml", set={"epochs": 5})
job.wait().status
"""

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
