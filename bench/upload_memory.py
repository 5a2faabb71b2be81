"""Upload decoding cost per format: peak server memory over the decoded data, and seconds.

Issue 28 finding 8: a 1 MB ``.npz`` peaked at +642 MB (5.8 s), a 20 MiB CSV at +435 MB
(16.8 s). Goals: peak resident-memory growth during any upload <= 2x the decoded data +
100 MiB, a 20 MiB CSV in <= 2 s. Every upload goes through a real HTTP server in one fresh
process (tests/api/upload_memory_probe.py: uvicorn, SQLite, the file streamed from disk by
the client), which reports the peak growth (VmHWM) and the decoded size (the stored arrays).

    .venv/bin/python bench/upload_memory.py [--only csv_20mib,npz_float64,...]
        [--baseline /work/main] [--rounds 1]

With ``--baseline TREE`` the same uploads also run against another checkout's API (the probe
is this one's), the arms alternating per round.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from csv_upload import mixed_csv

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "api" / "upload_memory_probe.py"
MiB = 2**20


def text_csv(mib: float) -> bytes:
    rng = np.random.default_rng(1)
    words = np.array(
        [
            "the",
            "a",
            "model",
            "trains",
            "fast",
            "slow",
            "data",
            "loss",
            "good",
            "bad",
            "day",
            "night",
        ]
    )
    n = int(mib * MiB / 60)
    lines = ["text,label"]
    for i in range(n):
        w = words[rng.integers(0, len(words), 9)]
        lines.append(f"{' '.join(w)},{'ab'[i % 2]}")
    return ("\n".join(lines) + "\n").encode()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def npz_f64(rows: int = 2**16, cols: int = 192) -> bytes:
    """float64 features holding float32 values (compress ~2x), decoded: 48 MiB of float32."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(rows, cols)).astype(np.float32).astype(np.float64)
    return _npz(x=x, y=rng.integers(0, 2, rows))


def npz_int8_bomb(rows: int = 2**20) -> bytes:
    """The audit's kind: < 1 MB of int8 that inflates to 128 MiB, stored as 512 MiB float32."""
    rng = np.random.default_rng(0)
    x = np.repeat(rng.integers(-100, 100, rows // 4).astype(np.int8), 512).reshape(rows, 128)
    return _npz(x=x, y=rng.integers(0, 2, rows).astype(np.int8))


def npz_images(n: int = 20_000) -> bytes:
    """uint8 NHWC images (channels last: transposed to NCHW while stored), 60 MiB."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return _npz(x=x, y=rng.integers(0, 10, n))


def image_zip(n: int = 2_000) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            png = io.BytesIO()
            arr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(arr).save(png, format="PNG")
            zf.writestr(f"c{i % 4}/{i}.png", png.getvalue())
    return buf.getvalue()


CASES: dict[str, tuple[str, Callable[[], bytes], dict[str, Any]]] = {
    "csv_20mib": ("csv", lambda: mixed_csv(20), {"impute": "mean"}),
    "text_csv_20mib": ("text_csv", lambda: text_csv(20), {}),
    "npz_float64": ("npz", npz_f64, {}),
    "npz_int8_1mb": ("npz", npz_int8_bomb, {}),
    "npz_uint8_nhwc": ("npz", npz_images, {}),
    "image_zip_png": ("image_zip", image_zip, {}),
}


def _probe(tree: Path, uploads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, str(PROBE), json.dumps(uploads), str(1024 * MiB)],
        cwd=tree, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    return [json.loads(line) for line in out.stdout.strip().splitlines()]


def _table(label: str, names: list[str], sizes: list[int], rows: list[dict[str, Any]]) -> None:
    print(f"[{label}]")
    print(f"{'case':16} {'upload':>8} {'decoded':>8} {'peak+':>8} {'bound':>8} "
          f"{'peak/bound':>10} {'peak/decoded':>12} {'seconds':>8}")  # fmt: skip
    for name, size, r in zip(names, sizes, rows, strict=True):
        assert r["status"] in (200, 201), (name, r)
        dec, growth = r["decoded_bytes"], r["growth_bytes"]
        bound = 2 * dec + 100 * MiB
        print(f"{name:16} {size / MiB:7.1f}M {dec / MiB:7.1f}M {growth / MiB:7.0f}M "
              f"{bound / MiB:7.0f}M {growth / bound:10.2f} {growth / dec:12.2f} "
              f"{r['seconds']:8.2f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(CASES))
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    names = args.only.split(",")
    arms = [("this tree", REPO)] + ([("baseline " + str(args.baseline), args.baseline)]
                                   if args.baseline else [])  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        uploads, sizes = [], []
        for name in names:
            fmt, make, fields = CASES[name]
            path = Path(tmp) / name
            data = make()
            path.write_bytes(data)
            sizes.append(len(data))
            del data
            uploads.append({"path": str(path), "format": fmt, "fields": fields})
        for _ in range(args.rounds):
            for label, tree in arms:
                _table(label, names, sizes, _probe(tree, uploads))


if __name__ == "__main__":
    main()
