"""``image_zip`` uploads: ``class_name/*.png|jpg`` folders, decoded with Pillow.

- One folder per class; the class ids follow the sorted folder names (as
  Keras ``image_dataset_from_directory`` does). A single top folder that
  holds the class folders (what zipping a folder gives) is allowed.
- ``__MACOSX/`` entries and hidden files (``.DS_Store``) are skipped; any
  other file that is not a ``.png``, ``.jpg`` or ``.jpeg`` is an error.
- Only the PNG and JPEG decoders are enabled. An image's size is read from
  its header and checked (``TRAINFORGE_MAX_IMAGE_PIXELS``) before it is
  decoded, and the whole (N, C, H, W) array's size (``TRAINFORGE_MAX_DATASET_BYTES``)
  as soon as it is known -- from ``image_size`` or the first header -- before any
  image is decoded. Images are decoded one at a time into that one array
  (a JPEG at a reduced scale when it is resized).
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
from api.datasets.schemas import ColorMode, DatasetOptions
from api.datasets.source import Source

EXTENSIONS = (".png", ".jpg", ".jpeg")


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


def _budget(n: int, channels: int, size: tuple[int, int], limits: ArchiveLimits) -> None:
    """The (N, C, H, W) uint8 array's size, checked before any image is decoded."""
    need = n * channels * size[0] * size[1]
    if need > limits.max_total_bytes:
        raise reject(
            "file",
            f"{n} images of {size[1]}x{size[0]} with {channels} channel(s) take {need} bytes "
            f"decoded; at most {limits.max_total_bytes} are accepted "
            "(TRAINFORGE_MAX_DATASET_BYTES): send fewer or smaller images, or a smaller "
            "image_size",
            "dataset_too_large",
        )


def parse_image_zip(data: Source, opts: DatasetOptions, limits: ArchiveLimits) -> ParsedDataset:
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
    max_pixels = limits.max_image_pixels
    undecodable = Collector("file", "bad_image")
    first: tuple[tuple[int, int], str] | None = None  # without image_size: the common size
    # One (N, C, H, W) array, allocated once its size is known (from image_size, or from
    # the first image's header) and checked against the limit before anything is decoded;
    # each image is decoded alone and written into it.
    x: NDArray[np.uint8] | None = None
    if target is not None:
        _budget(len(members), channels, (target[0], target[1]), limits)
        x = np.empty((len(members), channels, target[0], target[1]), dtype=np.uint8)
    ids = np.empty(len(members), dtype=np.int64)
    count = 0
    for class_name, info in members:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img: Image.Image = Image.open(
                    io.BytesIO(reader.read(info)), formats=["PNG", "JPEG"]
                )
                w, h = img.size  # from the header: nothing is decoded yet
                if w * h > max_pixels:
                    undecodable.add(
                        f"{info.filename!r} is {w}x{h}: over {max_pixels} pixels "
                        "(TRAINFORGE_MAX_IMAGE_PIXELS)"
                    )
                    continue
                if target is None:
                    if first is None:
                        first = ((h, w), info.filename)
                        _budget(len(members), channels, (h, w), limits)
                        x = np.empty((len(members), channels, h, w), dtype=np.uint8)
                    elif first[0] != (h, w):
                        (s1, f1) = first
                        raise reject(
                            "image_size",
                            f"the images have different sizes ({s1[1]}x{s1[0]} in {f1!r}, {w}x{h} "
                            f"in {info.filename!r}): send image_size=H,W to resize them all",
                            "mixed_image_sizes",
                        )
                elif img.format == "JPEG":
                    img.draft(mode, (target[1], target[0]))  # decode at a reduced scale
                img = img.convert(mode)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
                Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # fmt: skip
            undecodable.add(f"{info.filename!r} cannot be decoded as PNG or JPEG ({exc})")
            continue
        if target is not None and img.size != (target[1], target[0]):
            img = img.resize((target[1], target[0]), Image.Resampling.BILINEAR)
        assert x is not None
        arr = np.asarray(img, dtype=np.uint8)
        x[count] = arr.reshape(arr.shape[0], arr.shape[1], channels).transpose(2, 0, 1)
        ids[count] = index[class_name]
        count += 1
        del img, arr
    undecodable.raise_if_any("some images cannot be used")
    assert x is not None and count == len(members)
    labels = labels_mod.from_class_ids(ids, names)
    notes = []
    if root is not None:
        notes.append(f"the class folders were read from inside the top folder {root!r}")
    skipped = len(all_files) - len(infos)
    if skipped:
        notes.append(f"skipped {skipped} hidden or __MACOSX entries")
    if target is not None:
        notes.append(f"every image resized to {target[0]}x{target[1]} (height x width)")
    return ParsedDataset(modality="image", labels=labels, x=x, notes=notes, layout="NHWC")
