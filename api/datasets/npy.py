"""``.npy`` members of an uploaded npz, read with a memory budget.

What an npz *decompresses to* is known before a byte of the array is
inflated: each member's header declares its dtype and shape. So:

1. :func:`read_header` parses the header (numpy's literal-only reader, never
   pickle) from the member's stream and checks the dtype (no objects, no
   structured dtypes) and that the declared shape matches the member's
   declared size;
2. the caller checks the *stored* size those shapes imply (uint8 images stay
   uint8, other features become float32, labels 8 bytes) against
   ``TRAINFORGE_MAX_DATASET_BYTES`` -- before anything is decompressed;
3. :func:`read_array` inflates the member straight into one preallocated
   array (no list of chunks, no joined copy), counting the bytes that really
   come out;
4. :func:`to_float32` converts features to float32 in row blocks, checking
   finiteness and NaNs per block: never a float64 copy of the whole array.

Peak memory of an npz upload is therefore about the raw array plus its
float32 form, both bounded by the limit (see the README's reliability section).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

from api.datasets.archive import READ_ERRORS, BoundedReader
from api.datasets.errors import reject
from api.schemas import ImputeOption

MAX_HEADER = 10_000
_CHUNK = 2**20
_BLOCK_BYTES = 16 * 2**20  # rows converted to float32 at a time


@dataclass(frozen=True)
class NpyHeader:
    name: str
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype[Any]

    @property
    def count(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


def _parse_header(fp: IO[bytes], name: str) -> NpyHeader:
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fp, max_header_size=MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fp, max_header_size=MAX_HEADER)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, TypeError, EOFError) as exc:
        raise reject(
            "file", f"array {name!r} is not a valid .npy array ({exc})", "bad_npy"
        ) from exc
    if dtype.hasobject:
        raise reject(
            "file",
            f"array {name!r} holds Python objects (dtype {dtype}), which only pickle can load: "
            "save plain numeric arrays (e.g. x.astype('float32'))",
            "object_array",
        )
    if dtype.fields is not None or dtype.subdtype is not None:
        raise reject(
            "file", f"array {name!r} has a structured dtype ({dtype}): send a plain array",
            "structured_array",
        )  # fmt: skip
    return NpyHeader(name, tuple(int(s) for s in shape), bool(fortran), dtype)


def _open(reader: BoundedReader, info: zipfile.ZipInfo) -> IO[bytes]:
    try:
        return reader.archive.open(info)
    except READ_ERRORS as exc:
        raise reject(
            "file", f"archive entry {info.filename!r} cannot be read ({exc})", "bad_zip"
        ) from exc


def read_header(reader: BoundedReader, info: zipfile.ZipInfo, name: str) -> NpyHeader:
    """The member's header, checked against the member's declared size (nothing inflated)."""
    try:
        with _open(reader, info) as fp:
            header = _parse_header(fp, name)
            offset = fp.tell()
    except READ_ERRORS as exc:
        raise reject(
            "file", f"archive entry {info.filename!r} cannot be read ({exc})", "bad_zip"
        ) from exc
    if header.nbytes != info.file_size - offset:
        raise reject(
            "file",
            f"array {name!r} declares shape {header.shape} of {header.dtype} but holds "
            f"{info.file_size - offset} bytes: the file is truncated or corrupt",
            "bad_npy",
        )
    return header


def read_array(reader: BoundedReader, info: zipfile.ZipInfo, header: NpyHeader) -> NDArray[Any]:
    """The member's array, inflated into one preallocated buffer (native byte order)."""
    arr = np.empty(header.count, dtype=header.dtype)
    view = memoryview(arr.view(np.uint8).data) if header.count else memoryview(b"")
    got = 0
    try:
        with _open(reader, info) as fp:
            _parse_header(fp, header.name)
            while got < header.nbytes:
                n = fp.readinto(view[got : got + _CHUNK])  # type: ignore[attr-defined]
                if not n:
                    break
                got += n
            extra = fp.read(1)
    except READ_ERRORS as exc:
        raise reject(
            "file", f"archive entry {info.filename!r} cannot be read ({exc})", "bad_zip"
        ) from exc
    reader.total += got
    if got != header.nbytes or extra:
        raise reject(
            "file",
            f"array {header.name!r} holds another number of bytes than its header declares: "
            "the file is truncated or corrupt",
            "bad_npy",
        )
    arr = arr.reshape(header.shape, order="F" if header.fortran else "C")
    if header.fortran and arr.ndim > 1:
        arr = np.ascontiguousarray(arr)
    if not header.dtype.isnative:
        arr = arr.byteswap().view(header.dtype.newbyteorder("="))
    return arr


def _nan_note(x_rows: int, nan_total: int, nan_rows: list[int], impute: ImputeOption) -> str:
    if impute == ImputeOption.none:
        shown = ", ".join(str(r) for r in nan_rows[:10])
        raise reject(
            "file",
            f"x holds {nan_total} NaN values in {len(nan_rows)} samples ({shown}"
            f"{' ...' if len(nan_rows) > 10 else ''}): fix them, or send impute=mean",
            "missing_value",
        )
    # Kept as NaN: each job fills them with its training split's means (ml.data.prepare).
    return (
        f"{nan_total} NaN values in {len(nan_rows)} samples will be imputed with the "
        "per-feature means of each job's training split"
    )


def to_float32(x: NDArray[Any], impute: ImputeOption, notes: list[str]) -> NDArray[np.float32]:
    """``x`` as float32, checked: no infinities or values past float32; NaN per ``impute``.

    Converted in blocks of rows, so the only full-size array made is the result.
    """
    if x.dtype.kind in "biu":  # integers: always finite in float32 (int64 max < 3.4e38)
        return x.astype(np.float32)
    n = len(x)
    out = np.empty(x.shape, dtype=np.float32)
    row_bytes = max(1, x[0].nbytes if n else 1)
    block = max(1, _BLOCK_BYTES // row_bytes)
    nan_total, nan_rows = 0, list[int]()
    all_nan: NDArray[np.bool_] | None = None
    for start in range(0, n, block):
        src = x[start : start + block]
        with np.errstate(over="ignore", invalid="ignore"):
            dst = src.astype(np.float32)
        bad = np.isinf(dst)  # inf in the upload, or finite there but past float32
        if bad.any():
            first = start + int(np.argwhere(bad)[0][0])
            raise reject(
                "file",
                f"x holds infinite or too-large values (first at sample {first}): replace them",
                "feature_not_finite",
            )
        nan = np.isnan(dst)
        if nan.any():
            flat = nan.reshape(len(src), -1)
            nan_total += int(nan.sum())
            nan_rows.extend((start + np.flatnonzero(flat.any(axis=1))).tolist())
            cols: NDArray[np.bool_] = np.asarray(flat.all(axis=0))
        else:
            cols = np.zeros(int(np.prod(src.shape[1:])), dtype=bool)
        all_nan = cols if all_nan is None else np.logical_and(all_nan, cols)
        out[start : start + block] = dst
    if nan_total:
        note = _nan_note(n, nan_total, nan_rows, impute)
        if all_nan is not None and all_nan.any():
            raise reject(
                "file", f"{int(all_nan.sum())} features are NaN in every sample: cannot impute",
                "empty_column",
            )  # fmt: skip
        notes.append(note)
    return out
