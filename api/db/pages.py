"""Keyset pages over (created_at, id), newest first: the repository side of the API's
opaque cursors (api.pagination encodes and decodes them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_

T = TypeVar("T")


def newest_first(
    stmt: Select[T], model: Any, after: tuple[datetime, str] | None, limit: int
) -> Select[T]:
    """``stmt`` ordered newest first, from just after ``after`` (the previous page's
    last (created_at, id)), at most ``limit`` rows."""
    if after is not None:
        created, last_id = after
        stmt = stmt.where(
            or_(model.created_at < created, and_(model.created_at == created, model.id < last_id))
        )
    return stmt.order_by(model.created_at.desc(), model.id.desc()).limit(limit)
