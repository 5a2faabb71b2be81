"""One report per job, written by the worker when a classification job succeeds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from api.db.models import Base, utcnow


class JobReport(Base):
    __tablename__ = "job_reports"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    # The checkpoint whose weights were evaluated (it may be deleted later by retention).
    checkpoint_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    checkpoint_step: Mapped[int] = mapped_column(BigInteger)
    checkpoint_epoch: Mapped[int] = mapped_column(Integer)
    checkpoint_is_best: Mapped[bool]
    # classes, confusion_matrix, per_class, accuracy, n_samples (ml.report)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
