"""Request and response bodies of /v1/sweeps (every one a named model)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from api.schemas import JobStatus, StatusReason
from ml.spec import JobSpec, MonitorMode

Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChoiceParameter(_Strict):
    """One of ``values``: sampled by random and TPE; every value is a grid axis for grid."""

    kind: Literal["choice"] = "choice"
    values: list[JsonValue] = Field(min_length=1, max_length=1000)


class GridParameter(_Strict):
    """A grid axis (grid search); random and TPE treat it as a choice."""

    kind: Literal["grid"] = "grid"
    values: list[JsonValue] = Field(min_length=1, max_length=1000)


class UniformParameter(_Strict):
    kind: Literal["uniform"] = "uniform"
    low: Finite
    high: Finite


class LogUniformParameter(_Strict):
    """Uniform in log space: ``low`` must be > 0."""

    kind: Literal["log_uniform"] = "log_uniform"
    low: Finite
    high: Finite


class IntUniformParameter(_Strict):
    kind: Literal["int_uniform"] = "int_uniform"
    low: int
    high: int
    log: bool = Field(False, description="Uniform in log space (low must be >= 1).")


Distribution = Annotated[
    ChoiceParameter | GridParameter | UniformParameter | LogUniformParameter | IntUniformParameter,
    Field(discriminator="kind"),
]


class SweepAlgorithm(_Strict):
    kind: Literal["grid", "random", "tpe"] = Field(
        "random",
        description="grid: every combination of the choice/grid values, in order; random: "
        "Optuna's RandomSampler; tpe: Optuna's TPESampler (Bayesian).",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Same seed, same trial parameters.")


class SweepObjective(_Strict):
    metric: str = Field("val_loss", description="A metric every trial logs per epoch.")
    mode: MonitorMode = Field("auto", description="auto: as early stopping resolves it.")


class NoEarlyTermination(_Strict):
    kind: Literal["none"] = "none"


class AshaTermination(_Strict):
    """Asynchronous successive halving (Optuna's SuccessiveHalvingPruner)."""

    kind: Literal["asha"] = "asha"
    grace_epochs: int = Field(1, ge=1, le=100_000, description="Epochs before the first rung.")
    reduction_factor: int = Field(3, ge=2, le=100, description="1/rf of a rung is promoted.")


class MedianTermination(_Strict):
    """Stop a trial whose objective is worse than the median of finished trials at that epoch."""

    kind: Literal["median"] = "median"
    warmup_epochs: int = Field(1, ge=0, le=100_000, description="Epochs never pruned.")
    startup_trials: int = Field(5, ge=0, le=1000, description="Finished trials before pruning.")


EarlyTermination = Annotated[
    NoEarlyTermination | AshaTermination | MedianTermination, Field(discriminator="kind")
]


class SweepCreate(_Strict):
    name: str | None = Field(None, max_length=200)
    spec: JobSpec = Field(description="The base job spec every trial starts from.")
    parameters: dict[str, Distribution] = Field(
        min_length=1,
        max_length=32,
        description="Dotted spec path (`optimizer.lr`) → its distribution.",
    )
    algorithm: SweepAlgorithm = Field(default_factory=SweepAlgorithm)
    objective: SweepObjective = Field(default_factory=SweepObjective)
    max_trials: int | None = Field(
        None, ge=1, le=1000, description="Default: the grid's size for grid, else 10."
    )
    max_concurrent_trials: int = Field(2, ge=1, le=100)
    early_termination: EarlyTermination = Field(default_factory=NoEarlyTermination)
    priority: int = Field(0, ge=0, le=9, description="Each trial's job priority.")


class SweepStatus(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


class SweepStatusReason(StrEnum):
    completed = "completed"  # max_trials trials ended
    grid_exhausted = "grid_exhausted"  # every grid point ran
    canceled_by_user = "canceled_by_user"
    error = "error"


class SweepWarning(BaseModel):
    loc: str
    msg: str


class TrialCount(BaseModel):
    status: JobStatus
    status_reason: StatusReason | None
    count: int


class TrialRead(BaseModel):
    job_id: str
    trial_number: int
    status: JobStatus
    status_reason: StatusReason | None
    params: dict[str, Any]
    objective: float | None = Field(description="The best epoch's objective metric so far.")
    epochs: int = Field(description="Epochs trained.")
    rank: int | None = Field(description="1 = best; null while it has no objective.")


class SweepRead(BaseModel):
    id: str
    name: str | None
    status: SweepStatus
    status_reason: SweepStatusReason | None
    error: str | None
    spec: JobSpec
    parameters: dict[str, Distribution]
    algorithm: SweepAlgorithm
    objective: SweepObjective = Field(description="mode resolved to min or max.")
    early_termination: EarlyTermination
    max_trials: int = Field(description="For grid: at most the grid's size.")
    max_concurrent_trials: int
    trials_created: int
    trials_ended: int
    counts: list[TrialCount] = Field(description="Trials by status and reason.")
    best: TrialRead | None = Field(description="The best succeeded trial (pruned included).")
    epochs_trained: int = Field(description="Epochs trained by every trial, together.")
    warnings: list[SweepWarning] = Field(default_factory=list)
    created_at: datetime
    finished_at: datetime | None


class SweepPage(BaseModel):
    items: list[SweepRead]
    next_cursor: str | None


class TrialPage(BaseModel):
    """The leaderboard: trials with an objective best first, then the others by number."""

    items: list[TrialRead]
    next_cursor: str | None = Field(
        None, description="Always null: the leaderboard comes whole (max_trials <= 1000)."
    )


class SweepEventRead(BaseModel):
    """One SSE `data`: `trial_created`, `trial_ended`, `new_best`, `sweep_ended` (`end` last)."""

    kind: str
    trial_number: int | None = None
    job_id: str | None = None
    status: str | None = None
    status_reason: str | None = None
    params: dict[str, Any] | None = None
    objective: float | None = None
