"""``image_zip`` uploads: ``class_name/*.png|jpg`` folders, decoded with Pillow.

- One folder per class; the class ids follow the sorted folder names (as
  Keras ``image_dataset_from_directory`` does). A single top folder that
  holds the class folders (what zipping a folder gives) is allowed.
- ``__MACOSX/`` entries and hidden files (``.DS_Store``) are skipped; any
  other file that is not a ``.png``, ``.jpg`` or ``.jpeg`` is an error.
- Only the PNG and JPEG decoders are enabled. An image's size is read from
  its header and checked (``MAX_PIXELS``) before it is decoded.
- ``color_mode`` greyscale (1 channel) or rgb (3; alpha is dropped).
  Without ``image_size`` every image must have the same size; with it, each
  is resized (bilinear) to (height, width). Stored as uint8 (N, C, H, W).
"""

from __future__ import annotations

import io
import warnings
import zipfile

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from api.datasets import labels as labels_mod
from api.datasets.archive import ArchiveLimits, BoundedReader, open_zip
from api.datasets.codec import ParsedDataset
from api.datasets.errors import Collector, reject
from api.schemas import ColorMode, DatasetOptions

EXTENSIONS = (".png", ".jpg", ".jpeg")
MAX_PIXELS = 40_000_000  # per image, before decoding (Pillow warns at 89M)


def _skipped(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith(".")


def _layout(infos: list[zipfile.ZipInfo]) -> tuple[list[tuple[str, zipfile.ZipInfo]], str | None]:
    """(class name, member) pairs, and the top folder that was stripped (if any)."""
    parts = [i.filename.split("/") for i in infos]
    root = None
    if parts and all(len(p) == 3 for p in parts) and len({p[0] for p in parts}) == 1:
        root = parts[0][0]
        parts = [p[1:] for p in parts]
    bad = Collector("file", "bad_layout")
    out = []
    for p, info in zip(parts, infos, strict=True):
        if len(p) != 2 or not p[0]:
            bad.add(f"{info.filename!r} is not in a class folder: use class_name/image.png")
            continue
        if not p[1].lower().endswith(EXTENSIONS):
            bad.add(f"{info.filename!r} is not a .png, .jpg or .jpeg file")
            continue
        out.append((p[0], info))
    bad.raise_if_any("the zip must hold class_name/*.png|jpg files only")
    return out, root


def parse_image_zip(data: bytes, opts: DatasetOptions, limits: ArchiveLimits) -> ParsedDataset:
    archive = open_zip(data, limits, what="zip")
    reader = BoundedReader(archive, limits)
    all_files = list(reader.files())
    infos = [i for i in all_files if not _skipped(i.filename)]
    if not infos:
        raise reject("file", "the zip holds no images", "empty_archive")
    members, root = _layout(infos)
    names = sorted({c for c, _ in members})
    index = {n: i for i, n in enumerate(names)}
    mode = "L" if opts.color_mode == ColorMode.greyscale else "RGB"
    channels = 1 if mode == "L" else 3
    target = tuple(opts.image_size) if opts.image_size else None  # (H, W)
    undecodable = Collector("file", "bad_image")
    sizes: dict[tuple[int, int], str] = {}
    images: list[NDArray[np.uint8]] = []
    ids: list[int] = []
    budget = limits.max_total_bytes
    for class_name, info in members:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img: Image.Image = Image.open(
                    io.BytesIO(reader.read(info)), formats=["PNG", "JPEG"]
                )
                w, h = img.size
                if w * h > MAX_PIXELS:
                    undecodable.add(f"{info.filename!r} is {w}x{h}: over {MAX_PIXELS} pixels")
                    continue
                img = img.convert(mode)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
                Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # fmt: skip
            undecodable.add(f"{info.filename!r} cannot be decoded as PNG or JPEG ({exc})")
            continue
        if target is not None:
            if (h, w) != target:
                img = img.resize((target[1], target[0]), Image.Resampling.BILINEAR)
        else:
            sizes.setdefault((h, w), info.filename)
            if len(sizes) > 1:
                (s1, f1), (s2, f2) = list(sizes.items())[:2]
                raise reject(
                    "image_size",
                    f"the images have different sizes ({s1[1]}x{s1[0]} in {f1!r}, {s2[1]}x{s2[0]} "
                    f"in {f2!r}): send image_size=H,W to resize them all",
                    "mixed_image_sizes",
                )
        arr = np.asarray(img, dtype=np.uint8)
        budget -= arr.nbytes
        if budget < 0:
            raise reject(
                "file",
                f"the decoded images exceed {limits.max_total_bytes} bytes: send fewer or "
                "smaller images (or a smaller image_size)",
                "dataset_too_large",
            )
        images.append(arr.reshape(arr.shape[0], arr.shape[1], channels))
        ids.append(index[class_name])
    undecodable.raise_if_any("some images cannot be used")
    x = np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))
    labels = labels_mod.from_class_ids(np.asarray(ids, dtype=np.int64), names)
    notes = []
    if root is not None:
        notes.append(f"the class folders were read from inside the top folder {root!r}")
    skipped = len(all_files) - len(infos)
    if skipped:
        notes.append(f"skipped {skipped} hidden or __MACOSX entries")
    if target is not None:
        notes.append(f"every image resized to {target[0]}x{target[1]} (height x width)")
    return ParsedDataset(modality="image", labels=labels, x=x, notes=notes, layout="NHWC")
