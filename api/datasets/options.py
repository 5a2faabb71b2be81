"""The per-format options of an upload: which apply, their defaults, and their syntax.

An option that does not apply to the format is an error (it would otherwise be
silently ignored): ``text_column`` on a ``csv`` upload is a 422 at ``text_column``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from api.datasets.errors import DatasetRejected, Issue
from api.schemas import (
    ArrayLayout,
    ColorMode,
    DatasetFormat,
    DatasetOptions,
    DatasetTaskOption,
    ImputeOption,
)

MAX_IMAGE_SIDE = 1024
DELIMITERS = {",": ",", ";": ";", "|": "|", "\t": "\t", "tab": "\t", "\\t": "\t"}

APPLIES: dict[DatasetFormat, frozenset[str]] = {
    DatasetFormat.csv: frozenset(
        {"task", "label_column", "feature_columns", "delimiter", "impute"}
    ),
    DatasetFormat.text_csv: frozenset({"task", "label_column", "text_column", "delimiter"}),
    DatasetFormat.npz: frozenset({"task", "impute", "layout"}),
    DatasetFormat.image_zip: frozenset({"task", "image_size", "color_mode"}),
}


def _image_size(text: str, issues: list[Issue]) -> list[int] | None:
    parts = [p for p in re.split(r"[,x× ]+", text.strip().lower()) if p]
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or not all(1 <= s <= MAX_IMAGE_SIDE for s in sides):
        issues.append(
            Issue(
                "image_size",
                f"{text!r} is not a size: send 'H,W' or one number for a square, each side "
                f"1..{MAX_IMAGE_SIDE}",
                "invalid_image_size",
            )
        )
        return None
    return sides


def resolve(fmt: DatasetFormat, given: dict[str, Any]) -> DatasetOptions:
    """The options for ``fmt`` from the form fields the user sent (None = not sent)."""
    issues: list[Issue] = []
    sent = {k: v for k, v in given.items() if v is not None and v != ""}
    for key in sorted(set(sent) - APPLIES[fmt]):
        formats = [f.value for f, keys in APPLIES.items() if key in keys]
        issues.append(
            Issue(
                key,
                f"{key} does not apply to format {fmt.value!r} (only to {', '.join(formats)}): "
                "leave it out",
                "option_not_applicable",
            )
        )
    opts = DatasetOptions(task=DatasetTaskOption(sent.get("task", "auto")))
    if fmt in (DatasetFormat.csv, DatasetFormat.text_csv):
        opts.label_column = str(sent.get("label_column", "label")).strip()
        raw_delim = str(sent.get("delimiter", ","))
        delim = DELIMITERS.get(raw_delim) or DELIMITERS.get(raw_delim.strip().lower())
        if delim is None:
            issues.append(
                Issue(
                    "delimiter",
                    f"{raw_delim!r} is not a delimiter: use one of ',', ';', '|', 'tab'",
                    "invalid_delimiter",
                )
            )
        opts.delimiter = delim or ","
    if fmt == DatasetFormat.csv and "feature_columns" in sent:
        cols = [c.strip() for c in str(sent["feature_columns"]).split(",")]
        if not all(cols):
            issues.append(
                Issue(
                    "feature_columns",
                    "send column names separated by commas, none empty",
                    "invalid_feature_columns",
                )
            )
        opts.feature_columns = [c for c in cols if c]
    if fmt == DatasetFormat.text_csv:
        opts.text_column = str(sent.get("text_column", "text")).strip()
    if fmt in (DatasetFormat.csv, DatasetFormat.npz):
        opts.impute = ImputeOption(sent.get("impute", "none"))
    if fmt == DatasetFormat.npz:
        opts.layout = ArrayLayout(sent.get("layout", "auto"))
    if fmt == DatasetFormat.image_zip:
        if opts.task == DatasetTaskOption.regression:
            issues.append(
                Issue(
                    "task",
                    "an image_zip is a classification (one folder per class)",
                    "task_not_supported",
                )
            )
        mode = str(sent.get("color_mode", "rgb")).lower()
        opts.color_mode = (
            ColorMode.greyscale if mode in ("greyscale", "grayscale") else ColorMode.rgb
        )
        if "image_size" in sent:
            opts.image_size = _image_size(str(sent["image_size"]), issues)
    if issues:
        raise DatasetRejected(issues, title="Invalid upload options")
    return opts


def options_hash(fmt: DatasetFormat, opts: DatasetOptions) -> str:
    """Identity of the parse: the same file read with other options is another dataset."""
    canonical = json.dumps(
        {"format": fmt.value, **opts.model_dump(mode="json")}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
