"""Reading an uploaded zip without trusting it.

Before a single member is decompressed the whole directory is checked:
member count, the declared uncompressed total, each large member's
compression ratio, and every name (no absolute paths, no ``..``, no
backslashes or drive letters, no symlinks, no encryption, no duplicates).
Members are then read in bounded chunks, counting the bytes that really come
out, so a header that lies about sizes cannot get past the limits either.
Nothing is ever extracted to disk.
"""

from __future__ import annotations

import lzma
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from api.datasets import source
from api.datasets.errors import DatasetRejected, Issue, reject
from api.datasets.source import Source

# Below this size a member's compression ratio is not checked (tiny members
# compress extremely well and cannot hurt); the total limit still counts them.
RATIO_FLOOR_BYTES = 2**20
_READ = 2**20
_READ_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    zlib.error,
    lzma.LZMAError,
)
READ_ERRORS = _READ_ERRORS  # what reading a member may raise (a corrupt or lying archive)


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_total_bytes: int
    max_ratio: float
    max_image_pixels: int = 16_777_216  # one image (width x height), checked before decoding


def _bad_name(name: str) -> str | None:
    if "\x00" in name:
        return "has a NUL character"
    if "\\" in name:
        return "uses backslashes"
    if name.startswith("/"):
        return "is an absolute path"
    if len(name) >= 2 and name[1] == ":":
        return "has a drive letter"
    if ".." in name.split("/"):
        return "climbs out of the archive with '..'"
    return None


def open_zip(data: Source, limits: ArchiveLimits, what: str = "zip") -> zipfile.ZipFile:
    """The archive (read from the upload's file, or from bytes), with every member checked;
    raises DatasetRejected when it is unsafe."""
    if not source.head(data, 2).startswith(b"PK"):
        raise reject("file", f"the file is not a {what} archive", "not_a_zip")
    try:
        archive = zipfile.ZipFile(source.as_file(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise reject(
            "file", f"the file is not a readable {what} archive ({exc})", "bad_zip"
        ) from exc
    if len(infos) > limits.max_members:
        raise reject(
            "file",
            f"the archive has {len(infos)} entries; at most {limits.max_members} are accepted",
            "too_many_members",
        )
    issues: list[Issue] = []
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        why = _bad_name(name)
        if why is not None:
            issues.append(Issue("file", f"archive entry {name[:200]!r} {why}", "unsafe_path"))
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            issues.append(Issue("file", f"archive entry {name!r} is a symlink", "symlink"))
            continue
        if info.flag_bits & 0x1:
            issues.append(Issue("file", f"archive entry {name!r} is encrypted", "encrypted"))
            continue
        if name in seen:
            issues.append(Issue("file", f"archive entry {name!r} appears twice", "duplicate"))
            continue
        seen.add(name)
        total += info.file_size
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            ratio = info.file_size / max(info.compress_size, 1)
            issues.append(
                Issue(
                    "file",
                    f"archive entry {name!r} expands {ratio:.0f}x ({info.compress_size} -> "
                    f"{info.file_size} bytes); at most {limits.max_ratio:.0f}x is accepted "
                    "(a zip bomb?)",
                    "compression_ratio",
                )
            )
    if issues:
        raise DatasetRejected(issues, title="Unsafe archive")
    if total > limits.max_total_bytes:
        raise reject(
            "file",
            f"the archive expands to {total} bytes; at most {limits.max_total_bytes} are accepted",
            "archive_too_large",
        )
    return archive


class BoundedReader:
    """Reads members of a checked archive, counting real output against the total limit."""

    def __init__(self, archive: zipfile.ZipFile, limits: ArchiveLimits) -> None:
        self.archive, self.limits, self.total = archive, limits, 0

    def read(self, info: zipfile.ZipInfo) -> bytes:
        parts: list[bytes] = []
        size = 0
        try:
            with self.archive.open(info) as member:
                while chunk := member.read(_READ):
                    size += len(chunk)
                    self.total += len(chunk)
                    if size > info.file_size or self.total > self.limits.max_total_bytes:
                        raise reject(
                            "file",
                            f"archive entry {info.filename!r} expands past its declared size or "
                            f"the {self.limits.max_total_bytes}-byte limit",
                            "archive_too_large",
                        )
                    parts.append(chunk)
        except _READ_ERRORS as exc:
            raise reject(
                "file", f"archive entry {info.filename!r} cannot be read ({exc})", "bad_zip"
            ) from exc
        return b"".join(parts)

    def files(self) -> Iterator[zipfile.ZipInfo]:
        return (i for i in self.archive.infolist() if not i.is_dir())
