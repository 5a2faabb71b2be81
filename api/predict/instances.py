"""Instances as users send them -> the exported graph's input array (numpy, Pillow, ml.text).

Every problem is collected with its location (``instances.<i>`` or
``instances.<i>.<feature>``) so one 422 lists them all (up to ``MAX_LISTED``).
The rules follow ``model.json``: its input layout and dtype, feature names,
imputation, and the text cleaning and vocabulary.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from api.predict.table_cells import category_indexes, cell
from api.problems import FieldProblem
from ml.spec import TextCleaning
from ml.text import encode, tokenize

MAX_LISTED = 50
MAX_IMAGE_BYTES = 20_000_000


class InstanceErrors(Exception):
    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__(f"{len(problems)} invalid instances")
        self.problems = problems


class _Collector:
    def __init__(self) -> None:
        self.problems: list[FieldProblem] = []

    def add(self, loc: str, msg: str, code: str) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(FieldProblem(loc=loc, msg=msg, type=code))

    def raise_if_any(self) -> None:
        if self.problems:
            raise InstanceErrors(self.problems)


def vocabulary_index(meta: dict[str, Any]) -> dict[str, int] | None:
    """token -> id of a text model (``vocabulary[i]`` is id i; 0 and 1 are reserved)."""
    text = meta.get("text")
    if not text:
        return None
    return {token: i for i, token in enumerate(text["vocabulary"]) if i >= 2}


def to_input(
    meta: dict[str, Any], instances: list[Any], vocab: dict[str, int] | None = None
) -> NDArray[Any]:
    """The batch for the graph's input, or ``InstanceErrors``."""
    bad = _Collector()
    modality = meta["modality"]
    if modality == "text":
        out = _texts(meta, instances, bad, vocab if vocab is not None else vocabulary_index(meta))
    elif modality == "image":
        out = _images(meta, instances, bad)
    else:
        out = _rows(meta, instances, bad)
    bad.raise_if_any()
    return out


def _number(value: Any) -> float | None:
    """A finite number, NaN for a missing value, None for anything else."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _rows(meta: dict[str, Any], instances: list[Any], bad: _Collector) -> NDArray[Any]:
    n_features = int(meta["input"]["shape"][1])
    names: list[str] = meta.get("feature_names") or []
    index = {n: i for i, n in enumerate(names)}
    imputes = meta["preprocessing"].get("imputation") == "mean"
    table: list[dict[str, Any]] | None = meta.get("columns")  # a table's raw cells (issue 29)
    indexes = category_indexes(table) if table else []
    out = np.full((len(instances), n_features), np.nan, dtype=np.float32)
    for i, inst in enumerate(instances):
        if isinstance(inst, dict):
            if not names:
                bad.add(
                    f"instances.{i}",
                    f"this model's features have no names: send a list of {n_features} numbers",
                    "features_unnamed",
                )
                continue
            skipped = set(meta.get("ignored_columns") or ())  # a table row as uploaded
            for key in inst:
                if key not in index and key not in skipped:
                    bad.add(
                        f"instances.{i}.{key}",
                        f"unknown feature {key!r}; the features are {', '.join(names[:20])}",
                        "unknown_feature",
                    )
            cells = [(name, inst.get(name)) for name in names]
        elif isinstance(inst, list):
            if len(inst) != n_features:
                bad.add(
                    f"instances.{i}",
                    f"{len(inst)} values; the model takes {n_features} "
                    "features (in the upload's column order)",
                    "wrong_feature_count",
                )
                continue
            cells = [(names[j] if j < len(names) else str(j), v) for j, v in enumerate(inst)]
        else:
            bad.add(
                f"instances.{i}",
                "send a row as a list of numbers or a {feature: value} object",
                "not_a_row",
            )
            continue
        for j, (name, value) in enumerate(cells):
            if table:
                got, problem = cell(table[j], value, indexes[j])
                if problem is not None:
                    bad.add(f"instances.{i}.{name}", problem, "bad_cell")
                else:
                    out[i, j] = got
                continue
            number = _number(value)
            if number is None:
                bad.add(
                    f"instances.{i}.{name}", f"{value!r} is not a finite number", "not_a_number"
                )
            elif math.isnan(number) and not imputes:
                bad.add(
                    f"instances.{i}.{name}",
                    "the value is missing and this job had no "
                    "imputation (upload with impute=mean to allow it)",
                    "missing_value",
                )
            else:
                out[i, j] = number
    return out


def _images(meta: dict[str, Any], instances: list[Any], bad: _Collector) -> NDArray[Any]:
    shape = [int(s) for s in meta["input"]["shape"][1:]]
    layout, dtype = meta["input"]["layout"], meta["input"]["dtype"]
    out = np.zeros((len(instances), *shape), dtype=dtype)
    for i, inst in enumerate(instances):
        loc = f"instances.{i}"
        if isinstance(inst, str):
            arr = _decode_image(inst, layout, shape, loc, bad)
        elif isinstance(inst, list):
            try:
                arr = np.asarray(inst, dtype=np.float64)
            except (ValueError, TypeError):
                bad.add(
                    loc, f"not a nested list of numbers of shape {shape} ({layout})", "not_an_image"
                )
                continue
            if list(arr.shape) != shape:
                bad.add(
                    loc,
                    f"an image of shape {list(arr.shape)}; the model takes {shape} ({layout})",
                    "wrong_image_size",
                )
                continue
            if not np.isfinite(arr).all() or (
                dtype == "uint8" and (arr.min() < 0 or arr.max() > 255)
            ):
                bad.add(
                    loc,
                    "pixels must be finite" + (" and in 0..255" if dtype == "uint8" else ""),
                    "bad_pixels",
                )
                continue
        else:
            bad.add(
                loc, "send an image as a nested list or a base64 PNG/JPEG string", "not_an_image"
            )
            continue
        if arr is not None:
            out[i] = arr.astype(dtype)
    return out


def _decode_image(
    text: str, layout: str, shape: list[int], loc: str, bad: _Collector
) -> NDArray[Any] | None:
    try:
        raw = base64.b64decode(
            text.split(",", 1)[-1] if text.startswith("data:") else text, validate=True
        )
    except (binascii.Error, ValueError):
        bad.add(loc, "not valid base64 (send a PNG or JPEG file, base64-encoded)", "not_base64")
        return None
    if len(raw) > MAX_IMAGE_BYTES:
        bad.add(loc, f"the image is over {MAX_IMAGE_BYTES} bytes", "image_too_large")
        return None
    channels = 1 if layout == "NHW" else (shape[0] if layout == "NCHW" else shape[-1])
    height, width = (shape[1], shape[2]) if layout == "NCHW" else (shape[0], shape[1])
    try:
        with Image.open(io.BytesIO(raw), formats=["PNG", "JPEG"]) as img:
            if img.size != (width, height):
                bad.add(
                    loc,
                    f"the image is {img.size[1]}x{img.size[0]} (height x width); the "
                    f"model takes {height}x{width}",
                    "wrong_image_size",
                )
                return None
            mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels, "RGB")
            pixels = np.asarray(img.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        bad.add(loc, f"not a PNG or JPEG image ({exc})", "not_an_image")
        return None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if layout == "NCHW":
        return np.transpose(pixels, (2, 0, 1))
    return pixels[:, :, 0] if layout == "NHW" else pixels


def _texts(
    meta: dict[str, Any], instances: list[Any], bad: _Collector, vocab: dict[str, int] | None
) -> NDArray[Any]:
    text = meta["text"]
    cleaning = TextCleaning.model_validate(text["cleaning"])
    vocab = vocab or {}
    max_length = int(text["max_length"])
    out = np.zeros((len(instances), max_length), dtype=np.int64)
    for i, inst in enumerate(instances):
        if not isinstance(inst, str):
            bad.add(
                f"instances.{i}",
                f"a text must be a string, not {type(inst).__name__}",
                "not_a_string",
            )
            continue
        out[i] = encode(tokenize(inst, cleaning), vocab, max_length)
    return out
