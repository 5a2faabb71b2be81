"""Bodies of the /v1/datasets routes, and an upload's options."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class DatasetFormat(StrEnum):
    csv = "csv"
    text_csv = "text_csv"
    npz = "npz"
    image_zip = "image_zip"


class DatasetTaskOption(StrEnum):
    auto = "auto"
    classification = "classification"
    regression = "regression"


class DatasetTask(StrEnum):
    classification = "classification"
    regression = "regression"


class DatasetModality(StrEnum):
    tabular = "tabular"
    image = "image"
    text = "text"


class ImputeOption(StrEnum):
    none = "none"
    mean = "mean"
    median = "median"
    constant = "constant"


class ColumnType(StrEnum):
    number = "number"
    categorical = "categorical"
    boolean = "boolean"
    date = "date"
    text = "text"
    identifier = "identifier"
    ignore = "ignore"


class ColorMode(StrEnum):
    greyscale = "greyscale"
    rgb = "rgb"


class ArrayLayout(StrEnum):
    auto = "auto"
    channels_last = "channels_last"
    channels_first = "channels_first"


class DatasetOptions(BaseModel):
    """The parsing options an upload was read with; null where the format has no such option."""

    task: DatasetTaskOption = DatasetTaskOption.auto
    label_column: str | None = None
    text_column: str | None = None
    feature_columns: list[str] | None = Field(
        None, description="csv: the feature columns; null = every column but the label."
    )
    delimiter: str | None = None
    impute: ImputeOption | None = None
    image_size: list[int] | None = Field(None, description="image_zip: [height, width].")
    color_mode: ColorMode | None = None
    layout: ArrayLayout | None = None
    columns: dict[str, ColumnType] | None = Field(
        None, description="csv: column types the upload set (the rest are inferred)."
    )


class DatasetColumn(BaseModel):
    """A feature column of a csv upload: its type (inferred or set), missing and distinct cells."""

    name: str
    type: ColumnType
    missing: int = Field(description="Cells that are empty or NA, N/A, NaN, null, None.")
    distinct: int = Field(description="Distinct present values.")
    categories: list[str] | None = Field(
        None, description="categorical, boolean: the categories (sorted); stored index order."
    )
    note: str | None = Field(None, description="Why the column is left out, when it is.")


class DatasetClass(BaseModel):
    name: str
    count: int


class TargetSummary(BaseModel):
    min: float
    max: float
    mean: float
    std: float


class DatasetRead(BaseModel):
    id: str = Field(description="Use as `spec.dataset.source.dataset_id` with kind `uploaded`.")
    name: str
    format: DatasetFormat
    sha256: str = Field(description="SHA-256 of the uploaded file.")
    size_bytes: int = Field(description="Size of the uploaded file.")
    stored_bytes: int = Field(description="Size of the normalised form kept in the store.")
    task: DatasetTask
    task_inferred: bool = Field(description="True when `task` was inferred from the labels.")
    modality: DatasetModality
    n_samples: int
    n_features: int = Field(description="Flattened features per sample (0 for text).")
    image_shape: list[int] | None = Field(description="[channels, height, width] for images.")
    n_classes: int = Field(description="0 for a regression.")
    classes: list[DatasetClass] = Field(description="Class names in id order, with counts.")
    feature_names: list[str] | None
    columns: list[DatasetColumn] | None = Field(
        None, description="csv: every feature column with its type (null for other formats)."
    )
    target: TargetSummary | None = Field(description="A regression target's statistics.")
    options: DatasetOptions
    notes: list[str] = Field(description="What was inferred, ignored or imputed.")
    created_at: datetime


class DatasetPage(BaseModel):
    items: list[DatasetRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
