"""Opaque keyset cursors over (created_at, id), newest first."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from api.problems import FieldProblem, ProblemError


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, row_id = raw.split("|", 1)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive datetime")  # every cursor we hand out carries +00:00
        return when.astimezone(UTC), row_id
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProblemError(
            422,
            "Invalid request",
            "Malformed cursor: pass back a `next_cursor` value unchanged.",
            errors=[FieldProblem(loc="query.cursor", msg="malformed cursor", type="cursor")],
        ) from exc
