"""Column encodings of an uploaded table, fitted on a job's training split only.

An upload stores one float per used column (``api.datasets.columns``): a number, a
category's index into the upload's sorted ``categories`` (booleans: false, true), or a
date as days since 1970-01-01 UTC; NaN marks a missing cell. :func:`fit_table` learns,
from the training rows only, what each column becomes (docs/datasets.md):

- number: missing cells filled with the training split's ``mean``, ``median`` or a
  ``constant`` (= scikit-learn's ``SimpleImputer``), optionally followed by a 0/1
  missing indicator when the training split has missing cells (``add_indicator``);
- categorical / boolean, with the categories seen in the training split (sorted; a
  missing cell is a category of its own, last, when training has one):
  ``one_hot`` = ``OneHotEncoder(handle_unknown="ignore")`` (an unseen category is all
  zeros); ``ordinal`` = the category's index, an unseen one -1 (``OrdinalEncoder``
  with ``handle_unknown="use_encoded_value", unknown_value=-1``); ``embedding`` = an
  index for a learned ``nn.Embedding`` (0 = unseen, 1..K the categories, K+1 missing);
- date: ``date_parts`` = year, then month, day of week and day of year as sin/cos
  pairs (7 columns); ``date_number`` = days since the epoch; missing days are imputed
  first like a number.

Numbers, years and day counts are the "scalable" outputs: the job's normalization
(fitted on the training split) applies to them only.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ml.column_spec import CONVERSIONS, ONE_HOT_MAX_CATEGORIES, ColumnSpec

DATE_PARTS = ("year", "month_sin", "month_cos", "weekday_sin", "weekday_cos", "yday_sin",
              "yday_cos")  # fmt: skip


class EncodingError(ValueError):
    """A column cannot be encoded as the spec asks (the message names the column)."""


@dataclass(frozen=True)
class TableColumns:
    """What an upload says about its table: every column (``api.datasets.columns``), the
    used ones in stored order, and its ``impute`` option (the default for numbers)."""

    columns: list[dict[str, Any]]
    feature_names: list[str]
    impute: str = "none"
    label: str | None = None  # the label column's name (a raw row may carry it)

    def needs_encoding(self, specs: dict[str, ColumnSpec]) -> bool:
        """False for an all-number table read as before (the mean-imputing path)."""
        used = {str(n) for n in self.feature_names}
        kinds = {str(c["type"]) for c in self.columns if str(c["name"]) in used}
        return bool(specs) or kinds != {"number"} or self.impute not in ("none", "mean")


@dataclass
class FittedColumn:
    name: str
    source: int  # the column of the stored x
    kind: str  # number, categorical, date
    encoding: str  # number, one_hot, ordinal, embedding, date_parts, date_number
    values: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # training cats
    labels: list[str] = field(default_factory=list)  # their names
    missing_seen: bool = False
    fill: float | None = None  # None: impute none
    indicator: bool = False
    embedding_dim: int = 0

    @property
    def width(self) -> int:
        if self.encoding == "one_hot":
            return len(self.values) + int(self.missing_seen)
        if self.encoding == "date_parts":
            return len(DATE_PARTS) + int(self.indicator)
        return 1 + int(self.indicator)

    @property
    def slots(self) -> int:
        """embedding: rows of the table (unseen, the categories, missing)."""
        return len(self.values) + 2

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.kind, "encoding": self.encoding}
        if self.kind == "categorical":
            out["categories"] = self.labels
            out["missing_is_category"] = self.missing_seen
        else:
            out["impute"] = None if self.fill is None else self.fill
            out["missing_indicator"] = self.indicator
        return out


@dataclass
class TableEncoder:
    columns: list[FittedColumn]

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def scalable(self) -> NDArray[np.bool_]:
        mask: list[bool] = []
        for c in self.columns:
            if c.kind == "number" or c.encoding == "date_number":
                mask += [True] + [False] * int(c.indicator)
            elif c.encoding == "date_parts":
                mask += [True] + [False] * (len(DATE_PARTS) - 1 + int(c.indicator))
            else:
                mask += [False] * c.width
        return np.asarray(mask, dtype=bool)

    def embeddings(self) -> list[tuple[int, int, int]]:
        """(output column, slots, dim) of every embedding column."""
        out, at = [], 0
        for c in self.columns:
            if c.encoding == "embedding":
                out.append((at, c.slots, c.embedding_dim))
            at += c.width
        return out

    def transform(self, x: NDArray[np.floating]) -> NDArray[np.float32]:
        parts = [_transform(c, np.asarray(x[:, c.source], dtype=np.float64)) for c in self.columns]
        if not parts:
            return np.empty((len(x), 0), dtype=np.float32)
        return np.concatenate(parts, axis=1).astype(np.float32)


def _stat(values: NDArray[np.float64], how: str, fill_value: float) -> float:
    if how == "constant":
        return float(fill_value)
    present = values[~np.isnan(values)]
    if not len(present):
        return 0.0  # no training value at all: 0 (scikit-learn would drop the column)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.mean(present) if how == "mean" else np.median(present))


def _kind(meta: dict[str, Any], spec: ColumnSpec) -> str:
    stored = str(meta["type"])
    wanted = spec.type or stored
    name = meta["name"]
    if wanted == stored or wanted == "ignore":
        return wanted
    if (stored, wanted) not in CONVERSIONS:
        raise EncodingError(
            f"dataset.columns.{name}.type: a {stored} column cannot be used as {wanted} "
            "(upload it again with columns={name}={wanted})"
        )
    return wanted


def fit_table(
    x_train: NDArray[np.floating],
    columns: list[dict[str, Any]],
    feature_names: list[str],
    specs: dict[str, ColumnSpec],
    default_impute: str,
) -> TableEncoder:
    """The encodings of every used column, fitted on ``x_train`` (stored form)."""
    position = {n: i for i, n in enumerate(feature_names)}
    unknown = sorted(set(specs) - {str(c["name"]) for c in columns})
    if unknown:
        raise EncodingError(f"dataset.columns: no column {unknown[0]!r} in the dataset")
    fitted = []
    for meta in columns:
        name = str(meta["name"])
        spec = specs.get(name, ColumnSpec())
        if name not in position:
            if spec.type not in (None, "ignore"):
                raise EncodingError(
                    f"dataset.columns.{name}: the upload left this column out ({meta.get('note')})"
                )
            continue
        kind = _kind(meta, spec)
        if kind == "ignore":
            continue
        j = position[name]
        v = np.asarray(x_train[:, j], dtype=np.float64)
        fitted.append(_fit_column(name, j, kind, str(meta["type"]), meta, spec, v, default_impute))
    return TableEncoder(fitted)


def _fit_column(
    name: str, j: int, kind: str, stored: str, meta: dict[str, Any], spec: ColumnSpec,
    v: NDArray[np.float64], default_impute: str,
) -> FittedColumn:  # fmt: skip
    if kind in ("categorical", "boolean"):
        values = np.unique(v[~np.isnan(v)])
        cats = meta.get("categories") or []
        if stored in ("categorical", "boolean") and cats:
            labels = [str(cats[int(k)]) for k in values]
        else:
            labels = [str(int(k)) if k == int(k) else repr(float(k)) for k in values]
        encoding: str = spec.encoding or (
            "one_hot" if len(values) <= ONE_HOT_MAX_CATEGORIES else "embedding"
        )
        if encoding not in ("one_hot", "ordinal", "embedding"):
            raise EncodingError(f"dataset.columns.{name}.encoding: {encoding} is for dates")
        dim = spec.embedding_dim or min(50, (len(values) + 2) // 2)
        return FittedColumn(name, j, "categorical", encoding, values, labels,
                            bool(np.isnan(v).any()), embedding_dim=dim)  # fmt: skip
    is_date = stored == "date" and kind == "date"
    encoding = spec.encoding or ("date_parts" if is_date else "number")
    if encoding not in (("date_parts", "date_number") if is_date else ("number",)):
        raise EncodingError(f"dataset.columns.{name}.encoding: {encoding} does not apply to a "
                            f"{kind} column")  # fmt: skip
    how = spec.impute or (default_impute if default_impute != "none" else "none")
    fill = None if how == "none" else _stat(v, how, spec.fill_value)
    indicator = spec.missing_indicator and bool(np.isnan(v).any())
    return FittedColumn(name, j, "date" if is_date else "number", encoding, fill=fill,
                        indicator=indicator)  # fmt: skip


def _transform(c: FittedColumn, v: NDArray[np.float64]) -> NDArray[np.float64]:
    miss = np.isnan(v)
    if c.kind == "categorical":
        k = len(c.values)
        pos = np.searchsorted(c.values, np.where(miss, 0.0, v))
        found = ~miss & (pos < k)
        found[found] = c.values[pos[found]] == v[found]
        if c.encoding == "one_hot":
            out = np.zeros((len(v), c.width))
            out[found, pos[found]] = 1.0
            if c.missing_seen:
                out[miss, k] = 1.0
            return out
        if c.encoding == "ordinal":
            code = np.where(found, pos, -1.0)
            if c.missing_seen:
                code[miss] = k
            return code[:, None]
        code = np.where(found, pos + 1.0, 0.0)
        if c.missing_seen:
            code[miss] = k + 1
        return code[:, None]
    if miss.any():
        if c.fill is None:
            raise EncodingError(
                f"column {c.name!r} has {int(miss.sum())} missing values: set "
                f"dataset.columns.{c.name}.impute (mean, median or constant)"
            )
        v = np.where(miss, c.fill, v)
    out = date_parts(v) if c.encoding == "date_parts" else v[:, None]
    if c.indicator:
        out = np.concatenate([out, miss[:, None].astype(np.float64)], axis=1)
    return out


def date_parts(days: NDArray[np.float64]) -> NDArray[np.float64]:
    """(N, 7): year; month, day of week (Monday 0) and day of year as sin/cos pairs."""
    seconds = np.floor(days * 86400.0).astype("int64").astype("datetime64[s]")
    year = seconds.astype("datetime64[Y]")
    month = seconds.astype("datetime64[M]").astype(np.int64) % 12
    day = seconds.astype("datetime64[D]")
    weekday = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    yday = (day - year.astype("datetime64[D]")).astype(np.int64)
    tau = 2 * math.pi
    return np.stack(
        [year.astype(np.int64) + 1970.0,
         np.sin(tau * month / 12), np.cos(tau * month / 12),
         np.sin(tau * weekday / 7), np.cos(tau * weekday / 7),
         np.sin(tau * yday / 365.25), np.cos(tau * yday / 365.25)],
        axis=1,
    )  # fmt: skip
