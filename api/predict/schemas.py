"""Request and response bodies of the predict and model-export routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.predict import repository as repo


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(
        min_length=1,
        description="Tabular rows as lists (the upload's feature-column order) or "
        "`{feature: value}` objects (`null` = missing, imputed when the job imputed); "
        "images as nested lists in the model's input layout or base64 PNG/JPEG strings; "
        "texts as strings. At most `TRAINFORGE_PREDICT_MAX_INSTANCES` (default 1000).",
    )


class ClassPrediction(BaseModel):
    label: str = Field(description="The most probable class.")
    probabilities: dict[str, float] = Field(description="Every class's probability, by name.")


class ValuePrediction(BaseModel):
    value: float = Field(description="The regression model's output.")


class PredictResponse(BaseModel):
    predictions: list[ClassPrediction | ValuePrediction] = Field(
        description="One per instance, in order: `{label, probabilities}` for a "
        "classification, `{value}` for a regression."
    )


class ModelExportRead(BaseModel):
    """The job's exported model (ONNX + model.json), or why it has none."""

    status: Literal["ready", "failed"]
    error: str | None = Field(description="Why the export failed (the job's status is kept).")
    onnx_sha256: str | None
    onnx_bytes: int
    bundle_sha256: str | None
    bundle_bytes: int
    created_at: datetime


def export_read(row: repo.ModelExport | None) -> ModelExportRead | None:
    if row is None:
        return None
    return ModelExportRead(
        status="ready" if row.status == repo.READY else "failed",
        error=row.error,
        onnx_sha256=row.onnx_sha256,
        onnx_bytes=row.onnx_bytes,
        bundle_sha256=row.bundle_sha256,
        bundle_bytes=row.bundle_bytes,
        created_at=row.created_at,
    )
