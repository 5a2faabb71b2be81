"""Labels: the task (stated or inferred), class ids and names, and the checks on them.

Rules (also in docs/datasets.md):

- ``task=auto`` infers: labels that are not all numbers make a classification;
  numbers that are all integers with at most ``MAX_INFERRED_CLASSES`` distinct
  values make a classification; any other numbers make a regression. The
  answer says which it chose and why (``task_inferred``, ``notes``).
- Classes are sorted: numerically when every label is a number, else as
  strings (Keras ``image_dataset_from_directory`` order for folders). Class
  ids are the positions in that order.
- A classification needs at least two classes and at least two samples of
  every class (the validation split is stratified).
- A regression needs finite numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from api.datasets.errors import MAX_LISTED, Collector, reject

MAX_INFERRED_CLASSES = 20
MAX_CLASSES = 10_000
MIN_SAMPLES = 2

Task = Literal["classification", "regression"]
TaskOption = Literal["auto", "classification", "regression"]


@dataclass(frozen=True)
class Labels:
    task: Task
    y: NDArray[np.generic]  # int64 class ids, or float64 targets
    class_names: list[str]  # [] for a regression
    inferred: bool
    note: str | None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value


def _is_int(values: NDArray[np.float64]) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _class_name(value: float) -> str:
    return str(int(value)) if value == math.floor(value) else repr(value)


def from_strings(
    raw: list[str], task: str, where: list[int] | None = None, loc: str = "label_column"
) -> Labels:
    """Labels from text cells (CSV). ``where[i]`` is the line of sample i, for messages."""

    def line(i: int) -> str:
        return f"line {where[i]}" if where is not None else f"sample {i}"

    missing = Collector("file", "missing_label")
    for i, cell in enumerate(raw):
        if not cell:
            missing.add(f"{line(i)}: the label is empty")
    missing.raise_if_any("some samples have no label")
    numbers = [_number(c) for c in raw]
    numeric = all(v is not None for v in numbers)
    if numeric:
        values = np.asarray(numbers, dtype=np.float64)
        return from_numbers(values, task, where=where)
    if task == "regression":
        bad = Collector(loc, "label_not_numeric")
        for i, (cell, v) in enumerate(zip(raw, numbers, strict=True)):
            if v is None:
                bad.add(f"{line(i)}: {cell[:50]!r} is not a number")
        bad.raise_if_any("task is regression but some labels are not numbers")
    names = sorted(set(raw))
    index = {n: i for i, n in enumerate(names)}
    y = np.fromiter((index[c] for c in raw), dtype=np.int64, count=len(raw))
    note = None
    if task == "auto":
        note = "task inferred as classification: the labels are not all numbers"
    return _classes(y, names, inferred=task == "auto", note=note)


def from_numbers(values: NDArray[np.generic], task: str, where: list[int] | None = None) -> Labels:
    """Labels from numbers (CSV cells that all parse, or an npz ``y``)."""
    v = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(v))
    if len(bad):
        shown = ", ".join(
            (f"line {where[i]}" if where is not None else f"sample {i}") for i in bad[:MAX_LISTED]
        )
        raise reject("file", f"{len(bad)} labels are NaN or infinite ({shown})", "label_not_finite")
    note = None
    inferred = task == "auto"
    if task == "auto":
        distinct = np.unique(v)
        if _is_int(v) and len(distinct) <= MAX_INFERRED_CLASSES:
            task = "classification"
            note = (
                f"task inferred as classification: {len(distinct)} distinct integer labels "
                f"(at most {MAX_INFERRED_CLASSES}); send task=regression to override"
            )
        else:
            task = "regression"
            why = "labels are not all integers" if not _is_int(v) else "many distinct values"
            note = f"task inferred as regression: {why}; send task=classification to override"
    if task == "regression":
        return Labels("regression", v, [], inferred, note)
    distinct, y = np.unique(v, return_inverse=True)
    names = [_class_name(float(d)) for d in distinct]
    return _classes(y.astype(np.int64), names, inferred=inferred, note=note)


def from_class_names(
    y: NDArray[np.int64], names: list[str], *, inferred: bool, note: str | None
) -> Labels:
    """String labels already turned into ids into their sorted ``names`` (CSV, column-wise)."""
    return _classes(y, names, inferred=inferred, note=note if inferred else None)


def from_class_ids(y: NDArray[np.int64], names: list[str]) -> Labels:
    """Labels that are already ids into ``names`` (image folders)."""
    return _classes(y, names, inferred=False, note=None)


def _classes(y: NDArray[np.int64], names: list[str], *, inferred: bool, note: str | None) -> Labels:
    if len(names) < 2:
        only = f" (only {names[0]!r})" if names else ""
        raise reject(
            "file",
            f"a classification needs at least 2 classes and the labels hold {len(names)}{only}",
            "too_few_classes",
        )
    if len(names) > MAX_CLASSES:
        raise reject(
            "file",
            f"{len(names)} classes is more than the {MAX_CLASSES} accepted; is the label column "
            "right, or is this a regression (task=regression)?",
            "too_many_classes",
        )
    counts = np.bincount(y, minlength=len(names))
    lonely = [names[i] for i in np.flatnonzero(counts < MIN_SAMPLES)]
    if lonely:
        shown = ", ".join(repr(n) for n in lonely[:MAX_LISTED])
        more = f" and {len(lonely) - MAX_LISTED} more" if len(lonely) > MAX_LISTED else ""
        raise reject(
            "file",
            f"every class needs at least {MIN_SAMPLES} samples (the validation split is "
            f"stratified); these have one: {shown}{more}",
            "class_too_small",
        )
    return Labels("classification", y, names, inferred, note)
