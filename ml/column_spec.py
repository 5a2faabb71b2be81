"""``dataset.columns``: per-column type, encoding and imputation of an uploaded table (torch-free).

    "dataset": {"columns": {"island": {"type": "categorical", "encoding": "one_hot"},
                            "id": {"type": "ignore"},
                            "bill_length_mm": {"impute": "median", "missing_indicator": true},
                            "joined": {"encoding": "date_parts"}}}

Every field is optional: what is left out comes from the upload (the column's type and
its ``impute`` option) and the defaults in docs/datasets.md. The encodings are fitted on
the job's training split only (``ml.encoding``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from ml.spec_base import NoBoolNumbers, SuggestFields

ColumnTypeName = Literal["number", "categorical", "boolean", "date", "ignore"]
Encoding = Literal["one_hot", "ordinal", "embedding", "date_parts", "date_number"]
Impute = Literal["mean", "median", "constant", "none"]
ONE_HOT_MAX_CATEGORIES = 20  # the default encoding: one-hot up to this many, then embedding


class ColumnSpec(SuggestFields, NoBoolNumbers):
    """How one column of an uploaded table becomes model inputs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type: ColumnTypeName | None = Field(
        None,
        description="Override the upload's type: `ignore` (any column), `categorical` (a "
        "number column: its values become categories), `number` (a boolean or date column).",
    )
    encoding: Encoding | None = Field(
        None,
        description="categorical/boolean: `one_hot` (default up to "
        f"{ONE_HOT_MAX_CATEGORIES} training categories), `ordinal`, `embedding` (default "
        "above); date: `date_parts` (default) or `date_number`.",
    )
    embedding_dim: int | None = Field(
        None, ge=1, le=1024, description="embedding: default min(50, (categories + 1) // 2)."
    )
    impute: Impute | None = Field(
        None,
        description="number/date: how missing values are filled from the training split "
        "(default: the upload's `impute` option); `none` = a missing value fails the job.",
    )
    fill_value: Annotated[float, Field(ge=-1e30, le=1e30)] = Field(
        0.0, description="impute `constant`: the value (scikit-learn's fill_value)."
    )
    missing_indicator: bool = Field(
        False,
        description="number/date: add a 0/1 column that marks imputed cells (scikit-learn's "
        "add_indicator: only when the training split has missing values).",
    )


# (stored type, type a job may use it as) beyond the same type and `ignore`
CONVERSIONS = frozenset({("number", "categorical"), ("boolean", "number"), ("date", "number"),
                         ("categorical", "boolean"), ("boolean", "categorical")})  # fmt: skip
ENCODINGS = {
    "categorical": ("one_hot", "ordinal", "embedding"),
    "boolean": ("one_hot", "ordinal", "embedding"),
    "date": ("date_parts", "date_number"),
    "number": (),
}


def column_problems(
    columns: dict[str, ColumnSpec], stored: list[dict[str, object]], used: list[str]
) -> list[tuple[tuple[str, ...], str, str]]:
    """(loc under dataset.columns, message, type) of every spec entry that does not fit the
    upload's columns (``stored``: the upload's ``columns``; ``used``: its stored ones)."""
    by_name = {str(c["name"]): c for c in stored}
    out: list[tuple[tuple[str, ...], str, str]] = []
    for name, spec in columns.items():
        meta = by_name.get(name)
        if meta is None:
            shown = ", ".join(list(by_name)[:20])
            out.append(((name,), f"no column {name!r} in the dataset; its columns: {shown}",
                        "unknown_column"))  # fmt: skip
            continue
        stored_type = str(meta["type"])
        kind = spec.type or stored_type
        if kind == "ignore":
            continue
        if name not in used:
            out.append(((name, "type"), f"the upload left {name!r} out ({meta.get('note')}): "
                        "upload it again with columns=name=type", "column_not_stored"))  # fmt: skip
            continue
        if kind != stored_type and (stored_type, kind) not in CONVERSIONS:
            out.append(((name, "type"), f"a {stored_type} column cannot be used as {kind}",
                        "column_type"))  # fmt: skip
            continue
        if spec.encoding is not None and spec.encoding not in ENCODINGS.get(kind, ()):
            allowed = ", ".join(ENCODINGS.get(kind, ())) or "none (leave it out)"
            out.append(((name, "encoding"), f"{spec.encoding} does not apply to a {kind} "
                        f"column; use {allowed}", "column_encoding"))  # fmt: skip
        if kind in ("categorical", "boolean") and (spec.impute or spec.missing_indicator):
            out.append(((name, "impute"), "a missing category is a category of its own: "
                        "impute and missing_indicator apply to numbers and dates",
                        "column_impute"))  # fmt: skip
    return out


def encoded_width(
    columns: dict[str, ColumnSpec], stored: list[dict[str, object]], used: list[str]
) -> int:
    """The inputs the model's first layer gets from an uploaded table (an upper bound: the
    upload's categories, of which a job's training split may hold fewer), for the plan and
    the resource checks before a job is queued."""
    by_name = {str(c["name"]): c for c in stored}
    width = 0
    for name in used:
        meta = by_name.get(name, {})
        spec = columns.get(name, ColumnSpec())
        stored_type = str(meta.get("type", "number"))
        kind = spec.type or stored_type
        missing = int(str(meta.get("missing", 0))) > 0
        if kind == "ignore":
            continue
        if kind in ("categorical", "boolean"):
            cats = meta.get("categories")
            k = len(cats) if isinstance(cats, list) else int(str(meta.get("distinct", 1)))
            encoding = spec.encoding or ("one_hot" if k <= ONE_HOT_MAX_CATEGORIES else "embedding")
            if encoding == "one_hot":
                width += k + int(missing)
            elif encoding == "embedding":
                width += spec.embedding_dim or min(50, (k + 2) // 2)
            else:
                width += 1
            continue
        parts = 7 if kind == "date" and (spec.encoding or "date_parts") == "date_parts" else 1
        width += parts + int(spec.missing_indicator and missing)
    return width
