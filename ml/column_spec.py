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
