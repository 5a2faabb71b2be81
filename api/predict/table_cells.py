"""A raw cell of a row, as uploaded, -> the stored-form float a table model's graph takes.

``model.json`` ``columns`` (``ml.table_export``) lists every input column with its type:
a number (a JSON number, or a string that is one); a category (a string, or a number
written as the upload wrote it: its index in the upload's ``categories``; one the upload
never had is -1, which the graph treats as unseen); a boolean (true/false, yes/no, t/f,
y/n, 1/0, JSON booleans); a date (an ISO 8601 string, as at upload: days since the
epoch). ``null`` and the upload's missing markers (empty, NA, N/A, NaN, null, None) are
NaN: the graph imputes them, or treats them as a category of their own.
"""

from __future__ import annotations

import math
from typing import Any

from api.datasets.columns import FALSE_WORDS, MISSING, TRUE_WORDS, _days

Cell = tuple[float, None] | tuple[None, str]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in MISSING)


def cell(column: dict[str, Any], value: Any, index: dict[str, int] | None) -> Cell:
    """(the float, None) or (None, what is wrong)."""
    kind = column["type"]
    if _missing(value) or (isinstance(value, float) and math.isnan(value)):
        if not column.get("missing_allowed", True):
            return None, "the value is missing and this job fills no missing values here"
        return math.nan, None
    if kind == "number":
        if isinstance(value, bool):
            return None, f"{value!r} is not a number"
        try:
            number = float(value.strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            return None, f"{value!r} is not a number"
        return (number, None) if math.isfinite(number) else (None, f"{value!r} is not finite")
    if kind == "boolean":
        word = str(value).strip().lower() if not isinstance(value, bool) else str(value).lower()
        if word in TRUE_WORDS:
            return 1.0, None
        if word in FALSE_WORDS:
            return 0.0, None
        return None, f"{value!r} is not a boolean (true/false, yes/no, 1/0)"
    if kind == "date":
        if not isinstance(value, str):
            return None, f"{value!r} is not a date: send an ISO 8601 string (2007-11-11)"
        days, bad = _days([value.strip()])
        return (None, f"{value!r} is not an ISO 8601 date") if bad else (float(days[0]), None)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, f"{value!r} is not a category: send a string"
    if isinstance(value, float) and value == int(value):
        value = int(value)
    key = value.strip() if isinstance(value, str) else str(value)
    return float((index or {}).get(key, -1)), None


def category_indexes(columns: list[dict[str, Any]]) -> list[dict[str, int] | None]:
    return [
        {c: i for i, c in enumerate(col["categories"])} if col.get("categories") else None
        for col in columns
    ]
