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
from api.datasets.npy import NpyHeader, read_array, read_header, to_float32
from api.schemas import ArrayLayout, DatasetOptions, ImputeOption

CHANNELS = (1, 3, 4)


def _stored_bytes(x: NpyHeader, y: NpyHeader) -> int:
    """What the accepted dataset will hold: uint8 images stay uint8, other features become
    float32, labels int64/float64 -- known from the headers, before anything is inflated."""
    return x.count * (1 if x.dtype == np.uint8 else 4) + y.count * 8


def _load(data: bytes, limits: ArchiveLimits) -> dict[str, NDArray[Any]]:
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
    return {k: read_array(reader, members[k], headers[k]) for k in ("x", "y")}


def _images(x: NDArray[Any], layout: ArrayLayout) -> tuple[NDArray[Any], str]:
    """(N, C, H, W) images, and the upload's layout: NHW, NHWC or NCHW (a model export's input)."""
    if x.ndim == 3:
        return x[:, None, :, :], "NHW"
    a, c = x.shape[1], x.shape[3]
    if layout == ArrayLayout.auto:
        if c in CHANNELS and a not in CHANNELS:
            layout = ArrayLayout.channels_last
        elif a in CHANNELS and c not in CHANNELS:
            layout = ArrayLayout.channels_first
        else:
            raise reject(
                "layout",
                f"x has shape {list(x.shape)}: cannot tell (N, H, W, C) from (N, C, H, W); "
                "send layout=channels_last or layout=channels_first",
                "ambiguous_layout",
            )
    if layout == ArrayLayout.channels_last:
        return np.transpose(x, (0, 3, 1, 2)), "NHWC"
    return x, "NCHW"


def parse_npz(data: bytes, opts: DatasetOptions, limits: ArchiveLimits) -> ParsedDataset:
    arrays = _load(data, limits)
    x, y = arrays["x"], arrays["y"]
    if x.dtype.kind not in "biuf":
        raise reject(
            "file", f"x must be numeric; it is {x.dtype}", "features_not_numeric"
        )  # fmt: skip
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise reject(
            "file", f"y must have shape (N,), got {list(y.shape)} (one label per sample)",
            "bad_label_shape",
        )  # fmt: skip
    if x.ndim == 0 or x.ndim > 4:
        raise reject(
            "file",
            f"x has shape {list(x.shape)}: send (N, F) features or (N, H, W), (N, H, W, C), "
            "(N, C, H, W) images",
            "bad_feature_shape",
        )
    if len(x) != len(y):
        raise reject(
            "file", f"x has {len(x)} samples and y {len(y)}: they must match", "length_mismatch"
        )
    if len(y) < labels_mod.MIN_SAMPLES:
        raise reject("file", f"{len(y)} samples; at least 2 are needed", "too_few_samples")
    if x.ndim == 1:
        x = x[:, None]
    modality: Modality = "image" if x.ndim >= 3 else "tabular"
    layout = None
    if modality == "image":
        x, layout = _images(x, opts.layout or ArrayLayout.auto)
        if min(x.shape[1:]) < 1:
            raise reject("file", f"images of shape {list(x.shape[1:])} are empty", "empty_image")
    elif x.shape[1] < 1:
        raise reject("file", "x has no features", "no_features")
    notes: list[str] = []
    if x.dtype != np.uint8:
        x = to_float32(x, opts.impute or ImputeOption.none, notes)  # no float64 copy
    labels = _labels(y, opts)
    if labels.note:
        notes.insert(0, labels.note)
    return ParsedDataset(
        modality=modality, labels=labels, x=np.ascontiguousarray(x), notes=notes, layout=layout
    )


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
