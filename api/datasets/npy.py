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
3. :func:`iter_rows` inflates ``x`` in blocks of rows into one reused buffer,
   counting the bytes that really come out, and :class:`Float32Check` converts
   each block to float32 (checking finiteness and NaNs) straight into the
   stored array; ``y`` is read whole by :func:`read_array` (one preallocated
   array, no list of chunks);
4. never the raw ``x`` whole, never a float64 copy of it.

Peak memory of an npz upload is therefore the stored arrays plus one block
(issue 28, finding 8; bench/upload_memory.py).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

from api.datasets.archive import READ_ERRORS, BoundedReader
from api.datasets.errors import reject
from api.datasets.schemas import ImputeOption

MAX_HEADER = 10_000
_CHUNK = 2**20
BLOCK_BYTES = 4 * 2**20  # rows inflated and converted at a time (stored size of a block)


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


def iter_rows(
    reader: BoundedReader, info: zipfile.ZipInfo, header: NpyHeader, block_bytes: int
) -> Iterator[tuple[int, NDArray[Any]]]:
    """The member's array in blocks of rows, ``(first row, rows)``, each inflated into one
    reused buffer (native byte order): the whole raw array is never in memory. A
    Fortran-ordered array (rare: numpy writes C order) is read whole and yielded once."""
    if header.fortran and len(header.shape) > 1:
        yield 0, read_array(reader, info, header)
        return
    rows_total = header.shape[0] if header.shape else 1
    inner = header.shape[1:]
    row_bytes = header.dtype.itemsize
    for s in inner:
        row_bytes *= int(s)
    block = max(1, block_bytes // max(1, row_bytes))
    buf = np.empty(min(block, rows_total) * row_bytes, dtype=np.uint8)
    got = 0
    try:
        with _open(reader, info) as fp:
            _parse_header(fp, header.name)
            for start in range(0, rows_total, block):
                rows = min(block, rows_total - start)
                want = rows * row_bytes
                view = memoryview(buf.data)[:want]
                filled = 0
                while filled < want:
                    n = fp.readinto(view[filled:])  # type: ignore[attr-defined]
                    if not n:
                        break
                    filled += n
                got += filled
                reader.total += filled
                if filled != want:
                    break
                arr = buf[:want].view(header.dtype).reshape((rows, *inner))
                if not header.dtype.isnative:
                    arr = arr.byteswap().view(header.dtype.newbyteorder("="))
                yield start, arr
            extra = fp.read(1)
    except READ_ERRORS as exc:
        raise reject(
            "file", f"archive entry {info.filename!r} cannot be read ({exc})", "bad_zip"
        ) from exc
    if got != header.nbytes or extra:
        raise reject(
            "file",
            f"array {header.name!r} holds another number of bytes than its header declares: "
            "the file is truncated or corrupt",
            "bad_npy",
        )


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


class Float32Check:
    """Features converted to float32 block by block: no infinities or values past float32;
    NaN counted (and refused unless ``impute``), a feature NaN in every sample refused."""

    def __init__(self, impute: ImputeOption) -> None:
        self.impute = impute
        self.nan_total = 0
        self.nan_rows: list[int] = []
        self.all_nan: NDArray[np.bool_] | None = None

    def convert(self, start: int, src: NDArray[Any], dst: NDArray[np.float32]) -> None:
        """``src`` (rows from ``start``) converted into ``dst``, a block of the stored array:
        no float32 temporary, only boolean masks of the block."""
        with np.errstate(over="ignore", invalid="ignore"):
            np.copyto(dst, src, casting="unsafe")
        if src.dtype.kind in "biu":  # integers: always finite in float32 (int64 max < 3.4e38)
            return
        bad = np.isinf(dst)  # inf in the upload, or finite there but past float32
        if bad.any():
            first = start + int(np.argwhere(bad)[0][0])
            raise reject(
                "file",
                f"x holds infinite or too-large values (first at sample {first}): replace them",
                "feature_not_finite",
            )
        del bad
        nan = np.isnan(dst)
        if nan.any():
            flat = nan.reshape(len(src), -1)
            self.nan_total += int(nan.sum())
            self.nan_rows.extend((start + np.flatnonzero(flat.any(axis=1))).tolist())
            cols: NDArray[np.bool_] = np.asarray(flat.all(axis=0))
        else:
            cols = np.zeros(int(np.prod(src.shape[1:])), dtype=bool)
        self.all_nan = cols if self.all_nan is None else np.logical_and(self.all_nan, cols)

    def finish(self, n: int, notes: list[str]) -> None:
        if not self.nan_total:
            return
        note = _nan_note(n, self.nan_total, self.nan_rows, self.impute)
        if self.all_nan is not None and self.all_nan.any():
            raise reject(
                "file",
                f"{int(self.all_nan.sum())} features are NaN in every sample: cannot impute",
                "empty_column",
            )
        notes.append(note)
