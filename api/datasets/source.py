"""An upload's bytes as the parsers read them: in memory (``bytes``) or a file on disk.

The API hands the parsers the request's spooled file (``POST /v1/datasets``): the upload is
hashed while it streams in and is never held in memory whole; pyarrow and ``zipfile`` read
it from the file (issue 28, finding 8). Tests and tools may still pass ``bytes``.
"""

from __future__ import annotations

import ctypes
import io
from collections.abc import Callable, Iterator
from typing import BinaryIO

Source = bytes | BinaryIO

CHUNK = 2**20


def as_file(src: Source) -> BinaryIO:
    """A file positioned at the start (a bytes upload is wrapped, not copied)."""
    if isinstance(src, bytes):
        return io.BytesIO(src)
    src.seek(0)
    return src


def head(src: Source, n: int) -> bytes:
    """The first ``n`` bytes (fewer in a shorter upload)."""
    if isinstance(src, bytes):
        return src[:n]
    src.seek(0)
    out = src.read(n)
    src.seek(0)
    return out


def read_all(src: Source) -> bytes:
    """The whole upload in memory: for ``text_csv``, whose decoded form is the text itself."""
    if isinstance(src, bytes):
        return src
    src.seek(0)
    out = src.read()
    src.seek(0)
    return out


def iter_chunks(src: Source, chunk: int = CHUNK) -> Iterator[bytes]:
    f = as_file(src)
    while part := f.read(chunk):
        yield part
    f.seek(0)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to hand back this way
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Hand the allocator's freed pages back to the system (glibc ``malloc_trim``).

    pyarrow's buffers (the system pool) and numpy's temporaries are freed into glibc's heap,
    which keeps them; the next arrays then take new pages, and the process's peak grows by
    what was already freed. Trimming between the steps of a CSV parse keeps the peak near
    what is alive (bench/upload_memory.py: about 70 -> 58 MiB for a 20 MiB CSV)."""
    if _TRIM is not None:
        _TRIM(0)
