"""``npz`` uploads: arrays ``x`` and ``y`` as ``numpy.savez`` writes them, never unpickled.

Each ``.npy`` member is read through :mod:`api.datasets.archive` (bounded)
and its header is parsed with numpy's literal-only header reader; the array
is accepted only when its dtype is plain numbers (``x``) or numbers/strings
(``y``), and its declared shape matches the bytes that are there. Object
arrays (which would need pickle) are refused before anything is decoded.
The size the arrays will take once decoded (``x`` as float32 or uint8) is
computed from the headers and checked against ``TRAINFORGE_MAX_DATASET_BYTES``
before a member is inflated, and features become float32 block by block
(:mod:`api.datasets.npy`): memory follows what was accepted.

Shapes of ``x``: (N,) or (N, F) features; (N, H, W) greyscale images;
(N, H, W, C) or (N, C, H, W) images, told apart by ``layout`` or, with
``layout=auto``, by which axis has 1, 3 or 4 entries. Images are stored as
(N, C, H, W); uint8 images stay uint8, everything else becomes float32.
"""

from __future__ import annotations

import zipfile
from typing import Any

import numpy as np
from numpy.typing import NDArray

from api.datasets import labels as labels_mod
from api.datasets.archive import ArchiveLimits, BoundedReader, open_zip
from api.datasets.codec import Modality, ParsedDataset
from api.datasets.errors import reject
from api.datasets.npy import (
    BLOCK_BYTES,
    Float32Check,
    NpyHeader,
    iter_rows,
    read_array,
    read_header,
)
from api.datasets.schemas import ArrayLayout, DatasetOptions, ImputeOption
from api.datasets.source import Source

CHANNELS = (1, 3, 4)


def _stored_bytes(x: NpyHeader, y: NpyHeader) -> int:
    """What the accepted dataset will hold: uint8 images stay uint8, other features become
    float32, labels int64/float64 -- known from the headers, before anything is inflated."""
    return x.count * (1 if x.dtype == np.uint8 else 4) + y.count * 8


def _members(
    data: Source, limits: ArchiveLimits
) -> tuple[BoundedReader, dict[str, zipfile.ZipInfo], dict[str, NpyHeader]]:
    archive = open_zip(data, limits, what="npz (zip)")
    reader = BoundedReader(archive, limits)
    members: dict[str, zipfile.ZipInfo] = {}
    for info in reader.files():
        key = info.filename.removesuffix(".npy")
        members[key] = info
    missing = [k for k in ("x", "y") if k not in members]
    if missing:
        held = ", ".join(sorted(members)) or "nothing"
        raise reject(
            "file",
            f"the npz must hold arrays 'x' and 'y' (numpy.savez(f, x=..., y=...)); it holds {held}",
            "missing_array",
        )
    headers = {k: read_header(reader, members[k], k) for k in ("x", "y")}
    stored = _stored_bytes(headers["x"], headers["y"])
    if stored > limits.max_total_bytes:
        raise reject(
            "file",
            f"x of shape {list(headers['x'].shape)} ({headers['x'].dtype}) and y would take "
            f"{stored} bytes once decoded; at most {limits.max_total_bytes} are accepted "
            "(TRAINFORGE_MAX_DATASET_BYTES): send fewer or smaller samples",
            "dataset_too_large",
        )
    return reader, members, headers


def _image_layout(shape: tuple[int, ...], layout: ArrayLayout) -> str:
    """The upload's layout of 3-D or 4-D ``x``: NHW, NHWC or NCHW (a model export's input)."""
    if len(shape) == 3:
        return "NHW"
    a, c = shape[1], shape[3]
    if layout == ArrayLayout.auto:
        if c in CHANNELS and a not in CHANNELS:
            layout = ArrayLayout.channels_last
        elif a in CHANNELS and c not in CHANNELS:
            layout = ArrayLayout.channels_first
        else:
            raise reject(
                "layout",
                f"x has shape {list(shape)}: cannot tell (N, H, W, C) from (N, C, H, W); "
                "send layout=channels_last or layout=channels_first",
                "ambiguous_layout",
            )
    return "NHWC" if layout == ArrayLayout.channels_last else "NCHW"


def _stored_shape(shape: tuple[int, ...], layout: str | None) -> tuple[int, ...]:
    """x as stored: (N, F) features or (N, C, H, W) images."""
    if layout is None:
        return (shape[0], 1) if len(shape) == 1 else shape
    if layout == "NHW":
        return (shape[0], 1, shape[1], shape[2])
    if layout == "NHWC":
        return (shape[0], shape[3], shape[1], shape[2])
    return shape


def _as_stored(block: NDArray[Any], layout: str | None) -> NDArray[Any]:
    if layout is None:
        return block[:, None] if block.ndim == 1 else block
    if layout == "NHW":
        return block[:, None, :, :]
    if layout == "NHWC":
        return np.transpose(block, (0, 3, 1, 2))
    return block


def _check_shapes(x: NpyHeader, y: NpyHeader) -> None:
    """What the headers alone tell about x and y (nothing inflated yet)."""
    if x.dtype.kind not in "biuf":
        raise reject(
            "file", f"x must be numeric; it is {x.dtype}", "features_not_numeric"
        )  # fmt: skip
    y_shape = y.shape[:1] if len(y.shape) == 2 and y.shape[1] == 1 else y.shape
    if len(y_shape) != 1:
        raise reject(
            "file", f"y must have shape (N,), got {list(y.shape)} (one label per sample)",
            "bad_label_shape",
        )  # fmt: skip
    if len(x.shape) == 0 or len(x.shape) > 4:
        raise reject(
            "file",
            f"x has shape {list(x.shape)}: send (N, F) features or (N, H, W), (N, H, W, C), "
            "(N, C, H, W) images",
            "bad_feature_shape",
        )
    if x.shape[0] != y_shape[0]:
        raise reject(
            "file",
            f"x has {x.shape[0]} samples and y {y_shape[0]}: they must match",
            "length_mismatch",
        )
    if y_shape[0] < labels_mod.MIN_SAMPLES:
        raise reject("file", f"{y_shape[0]} samples; at least 2 are needed", "too_few_samples")


def parse_npz(data: Source, opts: DatasetOptions, limits: ArchiveLimits) -> ParsedDataset:
    """x is inflated block by block straight into its stored form (float32, or uint8 images):
    memory is the stored arrays plus one block (issue 28, finding 8)."""
    reader, members, headers = _members(data, limits)
    hx, hy = headers["x"], headers["y"]
    _check_shapes(hx, hy)
    layout = None
    if len(hx.shape) >= 3:
        layout = _image_layout(hx.shape, opts.layout or ArrayLayout.auto)
    shape = _stored_shape(hx.shape, layout)
    if layout is not None and min(shape[1:]) < 1:
        raise reject("file", f"images of shape {list(shape[1:])} are empty", "empty_image")
    if layout is None and shape[1] < 1:
        raise reject("file", "x has no features", "no_features")
    y = read_array(reader, members["y"], hy)
    if y.ndim == 2:
        y = y[:, 0]
    notes: list[str] = []
    uint8 = hx.dtype == np.uint8
    x = np.empty(shape, dtype=np.uint8 if uint8 else np.float32)
    check = Float32Check(opts.impute or ImputeOption.none)
    # Blocks of BLOCK_BYTES once stored (an int8 block is a quarter of its float32 form).
    block_bytes = max(1, BLOCK_BYTES * hx.dtype.itemsize // x.dtype.itemsize)
    for start, block in iter_rows(reader, members["x"], hx, block_bytes):
        rows = _as_stored(block, layout)
        if uint8:
            x[start : start + len(rows)] = rows
        else:
            check.convert(start, rows, x[start : start + len(rows)])
    check.finish(len(x), notes)
    labels = _labels(y, opts)
    if labels.note:
        notes.insert(0, labels.note)
    modality: Modality = "image" if layout is not None else "tabular"
    return ParsedDataset(modality=modality, labels=labels, x=x, notes=notes, layout=layout)


def _labels(y: NDArray[Any], opts: DatasetOptions) -> labels_mod.Labels:
    task = opts.task.value
    if y.dtype.kind in "US":
        cells = [
            str(v.decode("utf-8", "replace") if isinstance(v, bytes) else v).strip() for v in y
        ]
        return labels_mod.from_strings(cells, task, loc="file")
    if y.dtype.kind not in "biuf":
        raise reject("file", f"y must hold numbers or strings; it is {y.dtype}", "bad_labels")
    return labels_mod.from_numbers(y, task)
