"""Every model module, imported once so Alembic sees the whole schema."""

from __future__ import annotations

from api.db import audit, checkpoints, datasets, events, models
from api.db.models import Base

__all__ = ["Base", "audit", "checkpoints", "datasets", "events", "models"]
