"""Bodies of the /v1/jobs, /v1/specs and /v1/schemas routes: every one a named model (clean
generated clients). Datasets, checkpoints and health have their own (api.<domain>.schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from api.checkpoints.schemas import CheckpointRead
from api.joblogs.schemas import JobLogEvent
from api.ledger.status import JobStatus as JobStatus
from api.ledger.status import QueueReason as QueueReason
from api.ledger.status import StatusReason as StatusReason
from api.predict.schemas import ModelExportRead
from ml.spec import JobSpec


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: JobSpec
    name: str | None = Field(None, max_length=200, description="A label for humans.")
    priority: int = Field(
        0, ge=0, le=9, strict=True, description="Higher runs first within a team (an integer)."
    )


class JobProgress(BaseModel):
    epoch: int = Field(description="Epochs completed.")
    epochs: int = Field(description="Epochs the spec asks for.")
    step: int = Field(description="Global optimizer steps done.")


class JobTransitionRead(BaseModel):
    from_status: JobStatus | None
    to_status: JobStatus
    reason: StatusReason | None
    attempt: int
    at: datetime


class WarmStartSkipped(BaseModel):
    tensor: str
    reason: Literal["not_in_source", "shape_mismatch", "head_reinitialised", "reset"]
    message: str


class WarmStartRead(BaseModel):
    """What a warm-started model loads from its source checkpoint, planned before the job is
    queued by the function the worker loads with (``ml.warm_start_plan``)."""

    source_job_id: str
    checkpoint_id: int = Field(
        description="The source checkpoint (`best`/`latest` resolved at submit): pinned "
        "against the source's retention while the job waits."
    )
    planned: bool = Field(
        description="false: decided when the job starts (a table with typed columns sizes "
        "the model's inputs from its training split); the lists are then empty."
    )
    summary: str
    loaded: list[str] = Field([], description="state_dict names loaded from the source.")
    skipped: list[WarmStartSkipped] = Field(
        [],
        description="Every tensor not loaded, and why: not in the source, another shape, "
        "the output head re-initialised (classes or task differ), or warm_start.reset.",
    )
    reinitialised: list[str] = Field(
        [], description="The tensors that keep their fresh initialisation (= `skipped`'s)."
    )
    frozen: list[str] = Field([], description="Parameters warm_start.freeze freezes.")
    unused: list[str] = Field([], description="Source tensors this model has no place for.")


class JobRead(BaseModel):
    id: str
    name: str | None
    status: JobStatus
    status_reason: StatusReason | None
    queue_reason: QueueReason | None = Field(
        None,
        description="Why a queued job waits: its team is at max_running_jobs (`quota`), "
        "it asks for cuda and no GPU worker is alive (`waiting_for_gpu`), no alive worker "
        "offers as many devices as `resources.devices` (`waiting_for_devices`), or no "
        "worker (or not enough free devices of one) is free yet (`waiting_for_worker`).",
    )
    error: str | None = Field(description="What went wrong, for a failed job.")
    spec: JobSpec = Field(description="The resolved spec: every default filled in.")
    spec_version: str
    priority: int
    attempt: int = Field(description="Claims so far; the fencing token of the current run.")
    cancel_requested: bool
    progress: JobProgress
    stopped_epoch: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    transitions: list[JobTransitionRead]
    export: ModelExportRead | None = Field(
        None,
        description="The model export (ONNX, made when training ends): `ready`, or `failed` "
        "with its `error` (the job's status is not changed by it); null before the end.",
    )
    sweep_id: str | None = Field(None, description="The sweep this job is a trial of.")
    trial_number: int | None = Field(None, description="Its number within the sweep, from 0.")
    pack_id: str | None = Field(
        None, description="The pack of sweep trials it last trained in (issue 26); null = alone."
    )
    params: dict[str, Any] | None = Field(
        None, description="The trial's sampled parameters: dotted spec path → value."
    )
    warm_start: WarmStartRead | None = Field(
        None,
        description="With `spec.warm_start`: what the model loads from its source, planned "
        "at submit (null for a sweep's trial: see its log).",
    )


class MetricValue(BaseModel):
    step: int
    epoch: int
    value: float | str | None = Field(
        description="A number; non-finite values are the strings `NaN`, `Infinity`, `-Infinity`."
    )


class MetricSeries(BaseModel):
    name: str
    points: list[MetricValue]
    downsampled: bool = Field(
        False,
        description="True when `max_points` thinned this series: per step bucket its first, "
        "last, lowest and highest points (M4), so a chart keeps the series' shape.",
    )


class MetricsRead(BaseModel):
    series: list[MetricSeries]


class PlanLayer(BaseModel):
    index: int = Field(description="Position in `spec.model.layers`; the output head is last.")
    id: str | None
    op: str
    output_shape: list[int] = Field(
        description="Without the batch dimension: (features), (C, H, W) or (length, features)."
    )
    parameter_count: int


class SpecPlanRead(BaseModel):
    parameter_count: int
    train_samples: int
    validation_samples: int
    steps_per_epoch: int
    total_steps: int
    lr_per_epoch: list[float] | None = Field(
        description="LR at the start of each epoch; null when it depends on metrics."
    )
    estimated_memory_bytes: int = Field(
        0,
        description="Estimated training memory (parameters, gradients, optimizer state, "
        "activations at the batch size, the dataset); compared with "
        "TRAINFORGE_MAX_JOB_MEMORY_BYTES.",
    )
    layers: list[PlanLayer] = Field(
        default_factory=list,
        description="Every layer of the built model in order, the implied output head "
        "included; their parameter counts add up to `parameter_count`.",
    )


class SpecValidation(BaseModel):
    spec: JobSpec
    spec_version: str
    plan: SpecPlanRead
    warm_start: WarmStartRead | None = Field(
        None, description="With `spec.warm_start`: what the model would load from its source."
    )


class JobOrDryRun(RootModel[JobRead | SpecValidation]):
    """`POST /v1/jobs`'s 200: a replayed job (`JobRead`, it has an `id`) or, with
    `dry_run=true`, the resolved spec and its plan (`SpecValidation`, it has a `plan`)."""

    model_config = ConfigDict(json_schema_extra={"type": "object"})  # either is an object


class SpecValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: JobSpec


class JobSpecSchemaRead(BaseModel):
    """The job spec's JSON Schema, and the spec version it describes."""

    spec_version: str = Field(description="The spec version jobs are stored with.")
    json_schema: dict[str, Any] = Field(
        description="JSON Schema (draft 2020-12) of `JobSpec`, as `POST /v1/jobs` validates "
        "it; every variant part is a `oneOf` discriminated on `kind`."
    )


def spec_json(spec: JobSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


# --------------------------------------------------------------------------- datasets


# --------------------------------------------------------------------------- checkpoints, events


class JobStatusEvent(BaseModel):
    """SSE `status`: a status transition."""

    kind: Literal["status"]
    from_status: JobStatus | None
    to_status: JobStatus
    reason: StatusReason | None
    attempt: int
    at: datetime


class JobMetricsEvent(BaseModel):
    """SSE `metrics`: one flushed batch of points, shaped like `GET .../metrics`."""

    kind: Literal["metrics"]
    attempt: int | None = Field(None, description="The run (attempt) that wrote the batch.")
    series: list[MetricSeries]


class JobCheckpointEvent(CheckpointRead):
    """SSE `checkpoint`: a checkpoint was saved (and retention deleted `deleted`)."""

    kind: Literal["checkpoint"]
    deleted: list[int] = Field(description="Ids of checkpoints retention removed.")


class JobProgressEvent(BaseModel):
    """SSE `progress`: where the running job is inside its epoch, at most about twice a
    second. Ephemeral: a reconnecting client gets the latest one, not every one."""

    kind: Literal["progress"]
    attempt: int
    epoch: int = Field(description="0-based index of the epoch in progress.")
    epochs: int = Field(description="Epochs the spec asks for.")
    step: int = Field(description="Global optimizer steps done.")
    batch: int = Field(description="Steps done in this epoch.")
    steps_per_epoch: int
    loss: float | str | None = Field(
        description="Running mean training loss of this epoch so far (non-finite as a string)."
    )


class JobEndEvent(BaseModel):
    """SSE `end`: the job has ended; the server closes the stream after it."""

    kind: Literal["end"]
    status: JobStatus
    status_reason: StatusReason | None


class JobEvent(
    RootModel[
        Annotated[
            JobStatusEvent
            | JobMetricsEvent
            | JobCheckpointEvent
            | JobProgressEvent
            | JobLogEvent
            | JobEndEvent,
            Field(discriminator="kind"),
        ]
    ]
):
    """The `data` of every event of `GET /v1/jobs/{job_id}/events`; `event:` repeats `kind`."""
