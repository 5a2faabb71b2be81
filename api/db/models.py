"""The kernel's model base: ``Base``, the UTC datetime column type, ids and clocks.

The tables live in their domains (``api.ledger.models``: jobs, transitions, metric
points; ``api.teams.models``: teams, API keys; ``api.<domain>.models`` or its
repository for the rest; ``api.all_models`` imports them all for Alembic). Imports no
FastAPI: the worker reuses these models. Every team-owned row carries ``team_id`` so
scoping happens in the repository layer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    DateTime,
    Table,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite stores naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}  # noqa: RUF012


def table(model: type[Base]) -> Table:
    """A model's table, for a Core INSERT where a row is only appended: on the submit
    path the unit of work cost more than the row (issue 16)."""
    return cast(Table, model.__table__)
