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
from api.datasets.schemas import (
    ArrayLayout,
    ColorMode,
    ColumnType,
    DatasetFormat,
    DatasetOptions,
    DatasetTaskOption,
    ImputeOption,
)

MAX_IMAGE_SIDE = 1024
DELIMITERS = {",": ",", ";": ";", "|": "|", "\t": "\t", "tab": "\t", "\\t": "\t"}

APPLIES: dict[DatasetFormat, frozenset[str]] = {
    DatasetFormat.csv: frozenset(
        {"task", "label_column", "feature_columns", "delimiter", "impute", "columns"}
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
    if fmt == DatasetFormat.csv and "columns" in sent:
        from api.datasets.columns import parse_overrides

        types, bad = parse_overrides(str(sent["columns"]))
        issues += bad
        opts.columns = {k: ColumnType(v) for k, v in types.items()}
    if fmt == DatasetFormat.text_csv:
        opts.text_column = str(sent.get("text_column", "text")).strip()
    if fmt in (DatasetFormat.csv, DatasetFormat.npz):
        opts.impute = ImputeOption(sent.get("impute", "none"))
        if fmt == DatasetFormat.npz and opts.impute not in (ImputeOption.none, ImputeOption.mean):
            issues.append(
                Issue("impute", "an npz upload takes impute=none or mean", "option_not_applicable")
            )
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
    dumped = opts.model_dump(mode="json")
    if dumped.get("columns") is None:  # the identity of uploads made before the option
        dumped.pop("columns", None)
    canonical = json.dumps({"format": fmt.value, **dumped}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def infer_format(filename: str, head: bytes, given: dict[str, Any]) -> DatasetFormat:
    """The format of an upload sent without one: from its content, then its name.

    A zip archive is an ``npz`` when it holds ``.npy`` members, else an ``image_zip``; any
    other file is a ``csv`` (a ``text_csv`` when ``text_column`` is sent).
    """
    name = filename.lower()
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        if name.endswith(".npz") or b".npy" in head:
            return DatasetFormat.npz
        return DatasetFormat.image_zip
    if head.startswith(b"\x93NUMPY") or name.endswith(".npz"):
        return DatasetFormat.npz
    if given.get("text_column"):
        return DatasetFormat.text_csv
    return DatasetFormat.csv


def sniff_delimiter(filename: str, head: bytes) -> str | None:
    """A csv's delimiter when none is sent: tab for ``.tsv``, else the most frequent of
    ``,`` ``;`` ``tab`` ``|`` in the header line (None: the default ``,``)."""
    if filename.lower().endswith(".tsv"):
        return "tab"
    first = head.split(b"\n", 1)[0]
    counts = {d: first.count(d.encode()) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0 or best == ",":
        return None
    return "tab" if best == "\t" else best
