"""What a sweep searches and how: its parameters' distributions, the sampling algorithm,
the objective and early termination. Domain values (pydantic, no FastAPI) that the
worker reads; api/sweeps/schemas.py re-exports them for the HTTP bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ml.spec import MonitorMode

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


class SweepExecution(_Strict):
    """How a sweep's trials run (issue 26): packed or one job per worker at a time."""

    pack: Literal["auto", "off"] = Field(
        "auto",
        description="auto: trials whose specs differ only in numbers that leave shapes alone "
        "(learning rate, weight decay, dropout rate, seed, ...) train together as one pack in "
        "one worker process, each still an ordinary job; off: one trial per worker at a time.",
    )
    max_pack: int = Field(64, ge=1, le=256, description="Most trials in one pack.")


def execution_of(raw: dict[str, object] | None) -> SweepExecution:
    """A stored sweep's execution (None: stored before issue 26, the defaults)."""
    return SweepExecution.model_validate(raw or {})
