"""The body of GET /v1/jobs/{job_id}/report."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ClassScores(BaseModel):
    class_: str = Field(alias="class", description="The class's name (or its index).")
    precision: float = Field(description="Of the samples predicted as this class, correct.")
    recall: float = Field(description="Of this class's samples, predicted as it.")
    f1: float = Field(description="Harmonic mean of precision and recall (0 when both are 0).")
    support: int = Field(description="This class's samples in the validation split.")

    model_config = {"populate_by_name": True}


class ReportCheckpoint(BaseModel):
    id: int | None = Field(description="The checkpoint evaluated (retention may delete it later).")
    step: int
    epoch: int = Field(description="0-based epoch whose end the checkpoint was taken at.")
    is_best: bool = Field(
        description="True: the best checkpoint by checkpointing.monitor; false: the latest "
        "(the job kept no best one: keep_best 0)."
    )


class JobReport(BaseModel):
    """A classification job's validation report of its best checkpoint."""

    job_id: str
    checkpoint: ReportCheckpoint
    classes: list[str] = Field(description="Class names in class order (indices if unnamed).")
    confusion_matrix: list[list[int]] = Field(
        description="Rows: true class, columns: predicted class, both in `classes` order."
    )
    per_class: list[ClassScores] = Field(description="One entry per class, in class order.")
    accuracy: float = Field(description="The matrix's trace over its sum.")
    n_samples: int = Field(description="Validation samples evaluated (the matrix's sum).")
    created_at: datetime
