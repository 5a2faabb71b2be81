"""Column types of a CSV upload: inferred per column, overridable, stored as one float each.

Every feature column gets a type (rules in docs/datasets.md, "Column types"):

- ``number``: every present cell is a number;
- ``boolean``: every present cell is one of true/false, yes/no, t/f, y/n (any case) or
  the numbers 0/1;
- ``categorical``: strings (at most ``MAX_CATEGORIES`` distinct, none longer than
  ``MAX_CATEGORY_CHARS``), or integers with 3 to ``MAX_INTEGER_CATEGORIES`` distinct values
  each present 10 times on average (a year, a rating);
- ``date``: ISO 8601 dates or date-times (``2007-11-11``, ``2007/11/11``,
  ``2007-11-11T10:30:00Z`` …; an offset is converted to UTC);
- ``text``: long strings (mean length over ``TEXT_MEAN_CHARS``): left out of a ``csv``
  dataset with a note (a text dataset is a ``text_csv`` upload);
- ``identifier``: a string column unique per row (at least ``MIN_ROWS_FOR_ID`` rows): left
  out with a note;
- ``ignore``: left out because the upload said so (``columns=id:ignore``).

A used column is stored as one float32 per row: the number; a category's index in
``categories`` (sorted; booleans are ``["false", "true"]``); a date as days since
1970-01-01 UTC (float32: exact to the day, to about 3 minutes within one). A missing
cell is NaN. Each job then fits its encodings on its own training split (``ml.encoding``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from api.datasets.errors import MAX_LISTED, Collector, Issue

MISSING = ("", "na", "n/a", "nan", "null", "none")
TRUE_WORDS = ("true", "yes", "t", "y", "1")
FALSE_WORDS = ("false", "no", "f", "n", "0")
BOOLEAN_CATEGORIES = ["false", "true"]
MAX_CATEGORIES = 10_000
MAX_CATEGORY_CHARS = 200
MAX_INTEGER_CATEGORIES = 10
TEXT_MEAN_CHARS = 40
MIN_ROWS_FOR_ID = 20
MAX_CATEGORY_BYTES = 16 * 2**20  # all categories of all columns together, in the metadata
TYPES = ("number", "categorical", "boolean", "date", "text", "identifier", "ignore")
USED = frozenset({"number", "categorical", "boolean", "date"})
NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity)$"
DATE_RE = r"^\d{4}[-/]\d{2}[-/]\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|z|[+-]\d{2}:?\d{2})?$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Column:
    """One feature column as inferred: its description and (used columns) its floats."""

    name: str
    type: str
    missing: int
    distinct: int
    categories: list[str] | None = None
    note: str | None = None
    values: NDArray[np.floating] | None = None
    issues: list[Issue] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "missing": self.missing,
            "distinct": self.distinct,
        }
        if self.categories is not None:
            out["categories"] = self.categories
        if self.note:
            out["note"] = self.note
        return out


def _lower_missing(col: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(trimmed strings, their lower case, missing mask) of a string column."""
    trimmed = pc.utf8_trim_whitespace(col)
    lower = pc.utf8_lower(trimmed)
    missing = pc.or_kleene(pc.is_null(col), pc.is_in(lower, value_set=pa.array(MISSING)))
    return trimmed, lower, missing


def _floats(arr: pa.Array) -> NDArray[np.float64]:
    if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type):
        # A null becomes NaN; one call, not cast + fill_null (~0.4 ms each on a wide table).
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(
        pc.fill_null(pc.cast(arr, pa.float64()), np.nan).to_numpy(zero_copy_only=False),
        dtype=np.float64,
    )


def categorical_codes(values: pa.Array, present: pa.Array) -> tuple[NDArray[np.float32], list[str]]:
    """Sorted categories of the present cells and each row's index (NaN when missing).

    No ``if_else`` over strings: pyarrow's preallocates far more than the column holds."""
    enc = pc.dictionary_encode(values)
    every = enc.dictionary.to_pylist()
    idx = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    keep = np.asarray(present.to_numpy(zero_copy_only=False), dtype=bool) & (idx >= 0)
    used = np.unique(idx[keep])
    names = [str(every[i]) for i in used]
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.full(len(every) + 1, np.nan, dtype=np.float32)
    rank[used[np.asarray(order, dtype=np.int64)]] = np.arange(len(names), dtype=np.float32)
    codes = rank[idx]
    codes[~keep] = np.nan
    return codes, [names[i] for i in order]


def _where(rows: NDArray[np.intp]) -> str:
    shown = ", ".join(str(int(r) + 1) for r in rows[:5])
    return f"row{'s' if len(rows) > 1 else ''} {shown}{' ...' if len(rows) > 5 else ''}"


def _bad_cells(name: str, values: pa.Array, bad: NDArray[np.bool_], what: str, hint: str) -> Issue:
    rows = np.flatnonzero(bad)
    examples = ", ".join(repr(str(v)[:40]) for v in values.filter(pa.array(bad))[:3].to_pylist())
    return Issue(
        "file",
        f"column {name!r}: {len(rows)} cells are not {what} ({_where(rows)}: {examples}); {hint}",
        "feature_not_numeric" if what == "numbers" else f"feature_not_{what.rstrip('s')}",
    )


def _number_column(name: str, x: NDArray[np.float64], override: str | None) -> Column:
    present = ~np.isnan(x)
    missing = int(len(x) - present.sum())
    values = x[present]
    distinct = len(np.unique(values))
    col = Column(name, "number", missing, distinct)
    is_int = bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
    kind = override
    if kind is None:
        if distinct == 2 and set(np.unique(values).tolist()) == {0.0, 1.0}:
            kind = "boolean"
        elif is_int and 3 <= distinct <= MAX_INTEGER_CATEGORIES and len(values) >= 10 * distinct:
            kind = "categorical"
        else:
            kind = "number"
    if kind == "boolean":
        ok = np.isin(values, (0.0, 1.0))
        if not ok.all():
            col.issues.append(
                Issue(
                    "file",
                    f"column {name!r} is typed boolean but holds numbers other than 0 and 1",
                    "feature_not_boolean",
                )
            )
        col.type, col.categories, col.values = "boolean", list(BOOLEAN_CATEGORIES), x
    elif kind == "categorical":
        uniq, inverse = np.unique(values, return_inverse=True)
        if len(uniq) > MAX_CATEGORIES:
            return _too_many(col)
        codes = np.full(len(x), np.nan)
        codes[present] = inverse
        col.type, col.values = "categorical", codes
        col.categories = [_number_name(v) for v in uniq.tolist()]
    else:
        col.values = x
    return col


# Cells of float64 typed at once by `number_columns` (2 MiB a block).
BLOCK_CELLS = 2**18


def number_columns(names: list[str], arrays: list[pa.Array]) -> list[Column]:
    """``typed_column`` of integer or float columns without an override, a block at a time:
    `_number_column`'s counts and checks as array operations over the block (one at a time,
    a 100,000-column table spent ~40 µs of Python on each). Values are float32 views into
    the block. A column those checks make boolean or categorical is typed by
    `_number_column` itself: the rules live in one place."""
    x = np.empty((len(arrays[0]), len(arrays)), dtype=np.float64)
    for j, arr in enumerate(arrays):
        x[:, j] = _floats(arr)
    rows = x.shape[0]
    present = ~np.isnan(x)
    n_present = present.sum(axis=0)
    ordered = np.sort(x, axis=0)  # NaN last: a column's present values are its first rows
    # np.unique's count: a sorted present value that differs from the one before it.
    steps = (ordered[1:] != ordered[:-1]) & (np.arange(1, rows)[:, None] < n_present)
    distinct = (n_present > 0) + steps.sum(axis=0)
    whole = (np.isfinite(x) & (x == np.round(x))) | ~present
    is_int = whole.all(axis=0)
    last = ordered[np.maximum(n_present - 1, 0), np.arange(len(arrays))]
    boolean = (distinct == 2) & (ordered[0] == 0.0) & (last == 1.0)
    few = (distinct >= 3) & (distinct <= MAX_INTEGER_CATEGORIES) & (n_present >= 10 * distinct)
    categorical = is_int & few
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    out = []
    for j, name in enumerate(names):
        if boolean[j] or categorical[j]:
            out.append(_number_column(name, x[:, j].copy(), None))
        else:
            missing = int(rows - n_present[j])
            out.append(Column(name, "number", missing, int(distinct[j]), values=x32[:, j]))
    return out


def _number_name(v: float) -> str:
    return str(int(v)) if v == int(v) else repr(v)


def _too_many(col: Column) -> Column:
    col.type, col.values, col.categories = "ignore", None, None
    col.note = (
        f"left out: {col.distinct} distinct values is more than the {MAX_CATEGORIES} "
        "categories a column may have"
    )
    return col


def _days(strings: list[str]) -> tuple[NDArray[np.float64], list[int]]:
    """Days since the epoch (UTC) of ISO 8601 strings, and the positions that do not parse."""
    out = np.empty(len(strings), dtype=np.float64)
    bad: list[int] = []
    for i, s in enumerate(strings):
        try:
            d = datetime.fromisoformat(s.replace("/", "-"))
        except ValueError:
            out[i] = np.nan
            bad.append(i)
            continue
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)
        out[i] = (d - _EPOCH).total_seconds() / 86400.0
    return out, bad


def _date_column(name: str, col: Column, trimmed: pa.Array, present: pa.Array) -> Column:
    pos = np.flatnonzero(np.asarray(present.to_numpy(zero_copy_only=False), dtype=bool))
    strings = [str(s) for s in trimmed.filter(present).to_pylist()]
    days, bad = _days(strings)
    if bad:
        rows = pos[np.asarray(bad)]
        col.issues.append(
            Issue(
                "file",
                f"column {name!r}: {len(bad)} cells are not dates ({_where(rows)}: "
                f"{', '.join(repr(strings[i][:40]) for i in bad[:3])}); send ISO 8601 dates "
                "(2007-11-11, 2007-11-11T10:30:00Z) or set the column's type",
                "feature_not_date",
            )
        )
    values = np.full(len(trimmed), np.nan)
    values[pos] = days
    col.type, col.values = "date", values
    return col


def string_column(name: str, arr: pa.Array, override: str | None) -> Column:
    """The type and values of a column that pyarrow read as strings."""
    n = len(arr)
    trimmed, lower, missing = _lower_missing(arr)
    present = pc.invert(missing)
    n_present = n - int(pc.sum(missing).as_py() or 0)
    tp = trimmed.filter(present)  # the present cells, filtered once
    distinct = int(pc.count_distinct(tp).as_py() or 0)
    col = Column(name, "categorical", n - n_present, distinct)
    if n_present == 0 and override is None:
        col.type, col.note = "ignore", "left out: the column has no value"
        return col
    kind = override
    p_lower = lower.filter(present)
    numeric = pc.match_substring_regex(p_lower, NUMBER_RE)
    n_numeric = int(pc.sum(numeric).as_py() or 0)
    if kind is None:
        words = pc.is_in(p_lower, value_set=pa.array(TRUE_WORDS + FALSE_WORDS))
        if n_numeric == n_present:
            kind = "number"
        elif pc.all(words).as_py():
            kind = "boolean"
        elif pc.all(pc.match_substring_regex(tp, DATE_RE)).as_py():
            kind = "date"
        elif 2 * n_numeric >= n_present:  # mostly numbers: a stray cell, not a category
            bad = ~np.asarray(numeric.to_numpy(zero_copy_only=False), dtype=bool)
            col.issues.append(
                _bad_cells(
                    name,
                    tp,
                    bad,
                    "numbers",
                    f"fix them, or send columns={name}:categorical to use it as categories",
                )
            )
            return col
    if kind == "number":
        if n_numeric != n_present:
            bad = ~np.asarray(numeric.to_numpy(zero_copy_only=False), dtype=bool)
            col.issues.append(_bad_cells(name, tp, bad, "numbers", "fix them"))
            return col
        x = np.full(n, np.nan)
        x[np.asarray(present.to_numpy(zero_copy_only=False), dtype=bool)] = _floats(tp)
        return _number_column(name, x, None if override is None else "number")
    if kind == "boolean":
        truth = pc.is_in(lower, value_set=pa.array(TRUE_WORDS))
        falsity = pc.is_in(lower, value_set=pa.array(FALSE_WORDS))
        known = np.asarray(pc.or_(truth, falsity).to_numpy(zero_copy_only=False), dtype=bool)
        miss = np.asarray(missing.to_numpy(zero_copy_only=False), dtype=bool)
        if (~known & ~miss).any():
            col.issues.append(
                _bad_cells(
                    name,
                    trimmed,
                    ~known & ~miss,
                    "booleans",
                    "send true/false, yes/no or 0/1, or set the column's type",
                )
            )
        values = np.where(np.asarray(truth.to_numpy(zero_copy_only=False), dtype=bool), 1.0, 0.0)
        values[~known] = np.nan
        col.type, col.categories, col.values = "boolean", list(BOOLEAN_CATEGORIES), values
        return col
    if kind == "date":
        return _date_column(name, col, trimmed, present)
    if kind in ("ignore", "text", "identifier"):
        col.type, col.note = kind, "left out: the upload's columns option says so"
        return col
    lengths = pc.utf8_length(tp)
    longest = int(pc.max(lengths).as_py() or 0)
    mean_len = float(pc.mean(lengths).as_py() or 0.0)
    if override is None:
        if distinct == n == n_present and n >= MIN_ROWS_FOR_ID:
            col.type, col.note = "identifier", "left out: unique per row (an identifier)"
            return col
        if mean_len > TEXT_MEAN_CHARS or longest > MAX_CATEGORY_CHARS:
            col.type = "text"
            col.note = (
                "left out: long free text (a csv dataset uses numbers, categories, booleans "
                "and dates; upload the text with format=text_csv to train on it)"
            )
            return col
    if distinct > MAX_CATEGORIES:
        return _too_many(col)
    col.values, col.categories = categorical_codes(trimmed, present)
    return col


def typed_column(name: str, arr: pa.ChunkedArray | pa.Array, override: str | None) -> Column:
    """Infer (or apply the override of) one feature column of a pyarrow table."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if override in ("ignore", "text", "identifier"):
        missing = int(arr.null_count)
        col = Column(name, override, missing, 0)
        col.note = "left out: the upload's columns option says so"
        return col
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        if override in (None, "number", "boolean", "categorical"):
            return _number_column(name, _floats(arr), override)
        arr = pc.cast(arr, pa.string())
    elif pa.types.is_timestamp(t) or pa.types.is_date(t):
        if override in (None, "date"):
            secs = pc.cast(pc.cast(arr, pa.timestamp("s")), pa.int64())
            days = _floats(secs) / 86400.0
            miss = int(np.isnan(days).sum())
            return Column(name, "date", miss, len(np.unique(days[~np.isnan(days)])), values=days)
        arr = pc.cast(arr, pa.string())
    elif pa.types.is_null(t):
        arr = pa.nulls(len(arr), pa.string())
    elif not pa.types.is_string(t) and not pa.types.is_large_string(t):
        arr = pc.cast(arr, pa.string())
    return string_column(name, arr, override)


def parse_overrides(text: str) -> tuple[dict[str, str], list[Issue]]:
    """``island=categorical,id=ignore`` (or ``:``) -> {column: type}, and what is wrong."""
    out: dict[str, str] = {}
    issues: list[Issue] = []
    for part in (p.strip() for p in re.split(r",(?![^=:]*,)", text) if p.strip()):
        name, sep, kind = part.rpartition("=") if "=" in part else part.rpartition(":")
        name, kind = name.strip(), kind.strip().lower()
        if not sep or not name or kind not in TYPES or kind == "identifier":
            issues.append(
                Issue(
                    "columns",
                    f"{part!r}: send name=type, the type one of number, "
                    "categorical, boolean, date, text, ignore",
                    "invalid_columns",
                )
            )
            continue
        out[name] = kind
    return out, issues


def check_category_budget(columns: list[Column]) -> list[Issue]:
    total = sum(len(c) for col in columns for c in col.categories or ())
    if total <= MAX_CATEGORY_BYTES:
        return []
    return [
        Issue(
            "file",
            f"the categorical columns hold {total} characters of distinct values together; at "
            f"most {MAX_CATEGORY_BYTES}: leave some out (columns=name:ignore)",
            "too_many_categories",
        )
    ]


def missing_numbers(columns: list[Column], impute: str) -> list[Issue]:
    """A missing number or date is an error unless the upload names an imputation."""
    if impute != "none":
        return []
    holes = [c for c in columns if c.type in ("number", "date") and c.missing]
    bad = Collector("file", "missing_value")
    for c in holes[:MAX_LISTED]:
        bad.add(
            f"column {c.name!r} ({c.type}) has {c.missing} missing values: send impute=mean "
            "(or median, or constant) to fill them with each job's training statistics, or "
            f"columns={c.name}:ignore to leave it out"
        )
    bad.count = len(holes)
    return bad.issues
