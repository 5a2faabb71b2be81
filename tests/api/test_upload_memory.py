"""Memory follows what was accepted, not what an upload decompresses to (issue 18, item 4).

Each upload runs through the API in a fresh process (tests/api/upload_memory_probe.py),
which reports how far its resident memory peaked above where it was just before
(VmHWM). The bounds are the README's: a refused upload inflates nothing; an accepted
npz costs its raw arrays plus what is stored; an image costs one decode at a time.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO

MiB = 2**20
LIMIT = 256 * MiB  # TRAINFORGE_MAX_DATASET_BYTES in the probe
REFUSED_BOUND = 16 * MiB  # a refusal decided from headers inflates nothing
SLACK = 48 * MiB  # request parsing, the stored form's compression buffers, the database


def _probe(tmp_path: Path, data: bytes, fmt: str, limit: int, **fields: Any) -> dict[str, Any]:
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-m", "tests.api.upload_memory_probe", str(path), fmt,
         json.dumps(fields), str(limit)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _npz(rows: int) -> bytes:
    """int8 features of rows x 128 that deflate about 170x (under the zip-bomb ratio)."""
    rng = np.random.default_rng(0)
    n = rows * 128
    x = np.repeat(rng.integers(-100, 100, n // 512).astype(np.int8), 512).reshape(rows, 128)
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x, y=rng.integers(0, 2, rows).astype(np.int8))
    return buf.getvalue()


def _png_zip(width: int, height: int, count: int = 4) -> bytes:
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(png, format="PNG")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            zf.writestr(f"c{i % 2}/{i}.png", png.getvalue())
    return buf.getvalue()


pytestmark = [
    pytest.mark.e2e,  # each test measures a fresh subprocess's peak memory
    pytest.mark.skipif(
        not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc (VmHWM reset)"
    ),
]


def test_an_npz_that_inflates_past_the_limit_is_refused_before_inflating(
    tmp_path: Path,
) -> None:
    data = _npz(2**20)  # < 1 MB that inflates to 128 MiB of int8 = 512 MiB as float32
    assert len(data) < MiB
    r = _probe(tmp_path, data, "npz", LIMIT, task="classification")
    assert (r["status"], r["type"]) == (422, ["dataset_too_large"])
    assert r["growth_bytes"] < REFUSED_BOUND, r


def test_an_accepted_npz_costs_its_raw_arrays_plus_what_is_stored(tmp_path: Path) -> None:
    rows = 2**18  # 32 MiB of int8 -> 128 MiB of float32 (accepted)
    r = _probe(tmp_path, _npz(rows), "npz", LIMIT, task="classification")
    assert r["status"] == 201, r
    raw, stored = rows * 128 + rows, rows * 128 * 4 + rows * 8
    assert r["growth_bytes"] < raw + stored + SLACK, r


def test_a_zip_of_40_megapixel_pngs_is_refused_from_the_headers(tmp_path: Path) -> None:
    data = _png_zip(8000, 5000)  # four 40-megapixel images in half a megabyte
    r = _probe(tmp_path, data, "image_zip", LIMIT)
    assert r["status"] == 422 and set(r["type"]) == {"bad_image"}, r
    assert r["growth_bytes"] < REFUSED_BOUND, r


def test_images_whose_array_exceeds_the_limit_are_refused_before_decoding(
    tmp_path: Path,
) -> None:
    data = _png_zip(4096, 4096)  # 4 x 48 MiB decoded, over a 128 MiB limit
    r = _probe(tmp_path, data, "image_zip", 128 * MiB)
    assert (r["status"], r["type"]) == (422, ["dataset_too_large"]), r
    assert r["growth_bytes"] < REFUSED_BOUND, r


def test_resized_images_cost_one_decode_at_a_time(tmp_path: Path) -> None:
    pixels = 4096 * 4096  # TRAINFORGE_MAX_IMAGE_PIXELS, the largest image accepted
    r = _probe(tmp_path, _png_zip(4096, 4096), "image_zip", LIMIT, image_size="64,64")
    assert r["status"] == 201, r
    assert r["growth_bytes"] < 10 * pixels, r
