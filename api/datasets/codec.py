"""The stored form of an accepted dataset: a pickle-free ``.npz`` plus JSON metadata.

Arrays (``numpy.savez_compressed``; never an object array, read back with
``allow_pickle=False``):

- ``y``: int64 class ids (classification) or float64 targets (regression), (N,);
- ``x``: float32 (N, F) for tabular data, uint8 or float32 (N, C, H, W) for images;
- text: ``text_bytes`` (uint8, the UTF-8 of every text one after another) and
  ``text_offsets`` (int64, N + 1): text i is ``text_bytes[off[i]:off[i+1]]``.

The metadata holds the :class:`ml.checks.DatasetInfo` fields (task, modality,
n_samples, n_features, image_shape, n_classes) plus class names and counts,
feature names and a summary of a regression target. Numpy only: the worker
decodes with this module too.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import numpy as np
from numpy.typing import NDArray

from api.datasets.labels import Labels
from ml.checks import DatasetInfo

FORMAT_VERSION = 1
Modality = Literal["tabular", "image", "text"]


@dataclass
class ParsedDataset:
    modality: Modality
    labels: Labels
    x: NDArray[Any] | None = None
    texts: list[str] | None = None
    feature_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    layout: str | None = None  # images: the upload's layout (NHW, NHWC, NCHW)
    columns: list[dict[str, Any]] | None = None  # csv: every feature column, typed

    @property
    def n_samples(self) -> int:
        return len(self.labels.y)

    def nbytes(self) -> int:
        n = self.labels.y.nbytes + (self.x.nbytes if self.x is not None else 0)
        return n + sum(len(t) for t in self.texts or ())


@dataclass(frozen=True)
class Decoded:
    y: NDArray[Any]
    x: NDArray[Any] | None
    texts: list[str] | None


def metadata(ds: ParsedDataset) -> dict[str, Any]:
    labels = ds.labels
    image_shape: list[int] | None = None
    n_features = 0
    if ds.x is not None:
        n_features = int(np.prod(ds.x.shape[1:]))
        if ds.modality == "image":
            image_shape = [int(s) for s in ds.x.shape[1:]]
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "task": labels.task,
        "modality": ds.modality,
        "n_samples": ds.n_samples,
        "n_features": n_features,
        "image_shape": image_shape,
        "n_classes": len(labels.class_names),
        "class_names": labels.class_names,
        "class_counts": (
            np.bincount(labels.y.astype(np.int64), minlength=len(labels.class_names)).tolist()
            if labels.task == "classification"
            else []
        ),
        "feature_names": ds.feature_names,
        # csv: each feature column's type (x holds the used ones, in feature_names order).
        "columns": ds.columns,
        # A model export takes its input as uploaded: this layout, this dtype.
        "input_layout": ds.layout,
        "x_dtype": str(ds.x.dtype) if ds.x is not None else None,
        "task_inferred": labels.inferred,
        "target": None,
    }
    if labels.task == "regression":
        y = labels.y.astype(np.float64)
        meta["target"] = {
            "min": float(y.min()),
            "max": float(y.max()),
            "mean": float(y.mean()),
            "std": float(y.std()),
        }
    return meta


def dataset_info(meta: dict[str, Any]) -> DatasetInfo:
    shape = meta.get("image_shape")
    return DatasetInfo(
        task=meta["task"],
        modality=meta["modality"],
        n_samples=int(meta["n_samples"]),
        n_features=int(meta["n_features"]),
        image_shape=(int(shape[0]), int(shape[1]), int(shape[2])) if shape else None,
        n_classes=int(meta["n_classes"]),
    )


@dataclass(frozen=True)
class Encoded:
    """The stored form written to a temporary file: its size, sha256 and chunks."""

    file: IO[bytes]
    size: int
    sha256: str

    def chunks(self, chunk: int = 2**20) -> Iterator[bytes]:
        self.file.seek(0)
        while part := self.file.read(chunk):
            yield part


@contextmanager
def encode_file(ds: ParsedDataset) -> Iterator[Encoded]:
    """The stored form in a temporary file (closed and gone on exit): never a second copy of
    the dataset in memory, whatever its arrays compress to (issue 28, finding 8)."""
    with tempfile.TemporaryFile() as f:
        write(ds, f)
        size = f.tell()
        digest = hashlib.sha256()
        f.seek(0)
        while part := f.read(2**20):
            digest.update(part)
        yield Encoded(f, size, digest.hexdigest())


def encode(ds: ParsedDataset) -> bytes:
    buf = io.BytesIO()
    write(ds, buf)
    return buf.getvalue()


def write(ds: ParsedDataset, out: IO[bytes]) -> None:
    """Write the stored form (numpy's ``.npz`` layout) to ``out``."""
    arrays: dict[str, NDArray[Any]] = {"y": ds.labels.y}
    if ds.x is not None:
        arrays["x"] = ds.x
    texts = ds.texts
    if texts is not None:
        lengths = np.fromiter(
            (len(t) if t.isascii() else len(t.encode("utf-8")) for t in texts),
            dtype=np.int64,
            count=len(texts),
        )
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        arrays["text_offsets"] = offsets
    for name, arr in arrays.items():
        if arr.dtype.hasobject:  # never: the parsers build numeric arrays only
            raise ValueError(f"array {name} holds objects")
    # numpy's .npz layout (np.load reads it), deflated at level 1: the stored form of a
    # 20 MiB CSV compresses in a fraction of a second rather than seconds (issue 28.8).
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                _write_npy(member, np.ascontiguousarray(arr))
        if texts is not None:  # the UTF-8 of every text, written a batch of texts at a time
            with zf.open("text_bytes.npy", "w", force_zip64=True) as member:
                _write_header(member, np.dtype(np.uint8), (int(offsets[-1]),))
                for at in range(0, len(texts), 4096):
                    member.write("".join(texts[at : at + 4096]).encode("utf-8"))


def _write_header(out: IO[bytes], dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    try:
        np.lib.format.write_array_header_1_0(out, header)
    except ValueError:  # a header too long for format 1.0
        np.lib.format.write_array_header_2_0(out, header)


def _write_npy(out: IO[bytes], arr: NDArray[Any]) -> None:
    """``numpy.lib.format.write_array``, but the data in 1 MiB slices of the array itself
    (numpy copies 16 MiB pieces to write to a zip member): no copy of the dataset."""
    _write_header(out, arr.dtype, arr.shape)
    data = memoryview(arr.reshape(-1).view(np.uint8).data) if arr.size else memoryview(b"")
    for at in range(0, len(data), 2**20):
        out.write(data[at : at + 2**20])


def decode(content: bytes) -> Decoded:
    with np.load(io.BytesIO(content), allow_pickle=False) as npz:
        names = set(npz.files)
        y = npz["y"]
        x = npz["x"] if "x" in names else None
        texts = None
        if "text_bytes" in names:
            raw = npz["text_bytes"].tobytes()
            off = npz["text_offsets"].tolist()
            texts = [raw[off[i] : off[i + 1]].decode("utf-8") for i in range(len(off) - 1)]
    return Decoded(y=y, x=x, texts=texts)
