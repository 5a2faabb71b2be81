"""Request and response bodies of /v1/sweeps (every one a named model)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.ledger.status import JobStatus, StatusReason
from api.sweeps.search import AshaTermination as AshaTermination
from api.sweeps.search import ChoiceParameter as ChoiceParameter
from api.sweeps.search import Distribution as Distribution
from api.sweeps.search import EarlyTermination as EarlyTermination
from api.sweeps.search import GridParameter as GridParameter
from api.sweeps.search import IntUniformParameter as IntUniformParameter
from api.sweeps.search import LogUniformParameter as LogUniformParameter
from api.sweeps.search import MedianTermination as MedianTermination
from api.sweeps.search import NoEarlyTermination as NoEarlyTermination
from api.sweeps.search import SweepAlgorithm as SweepAlgorithm
from api.sweeps.search import SweepExecution as SweepExecution
from api.sweeps.search import SweepObjective as SweepObjective
from api.sweeps.search import UniformParameter as UniformParameter
from ml.spec import JobSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    execution: SweepExecution = Field(
        default_factory=SweepExecution,
        description="Packing: trials that differ only in numbers train together (docs/sweeps.md).",
    )


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
    pack_id: str | None = Field(
        None, description="The pack this trial last trained in (see `packs`); null = alone."
    )


class PackRead(BaseModel):
    """Trials one worker claimed together and trained as one pack."""

    id: str
    trial_ids: list[str] = Field(description="Job ids of the members, by trial number.")
    trial_numbers: list[int]
    started_at: datetime


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
    execution: SweepExecution
    packs: list[PackRead] = Field(
        default_factory=list, description="Every pack its trials trained in, oldest first."
    )
    packing_off_reason: str | None = Field(
        None, description="Why packing fell back to `off` for some trials (their spec), if so."
    )
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
    """One SSE `data`: `trial_created`, `trial_ended`, `new_best`, `packing_off`,
    `sweep_ended` (`end` last)."""

    kind: str
    trial_number: int | None = None
    job_id: str | None = None
    status: str | None = None
    status_reason: str | None = None
    params: dict[str, Any] | None = None
    objective: float | None = None
    reason: str | None = Field(None, description="`packing_off`: why trials train alone.")
