"""CSV upload cost: seconds and peak memory of one 20 MiB mixed-type CSV through the API.

Issue 28 finding 8 measured +435 MB and 16.8 s for a 20 MiB CSV read row by row; the
goals are <= 2 s and a peak resident-memory growth <= 2x the decoded data + 100 MB.
The upload runs in a fresh process (tests/api/upload_memory_probe.py: a real HTTP server,
SQLite in a temporary home, a small warm-up upload first), which reports the request's wall
time and its VmHWM growth; this prints them with the ratios to the goals. Every format:
bench/upload_memory.py.

    .venv/bin/python bench/csv_upload.py [--mib 20] [--impute mean]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MiB = 2**20


def mixed_csv(mib: float, seed: int = 0) -> bytes:
    """Eight numeric columns (a few cells missing), a city, a flag, a date and a label."""
    rng = np.random.default_rng(seed)
    n = int(mib * MiB / 76)  # about 76 bytes a row
    nums = rng.normal(100, 30, (n, 8)).round(3).astype(str)
    nums[rng.random((n, 8)) < 0.01] = ""
    city = np.array(["Oslo", "Lima", "Pune", "Kyiv", "Accra"])[rng.integers(0, 5, n)]
    flag = np.array(["yes", "no"])[rng.integers(0, 2, n)]
    day = (np.datetime64("2015-01-01") + rng.integers(0, 3000, n)).astype(str)
    label = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    cols = [*(nums[:, j] for j in range(8)), city, flag, day, label]
    header = ",".join([f"x{j}" for j in range(8)] + ["city", "member", "joined", "label"])
    body = "\n".join(",".join(row) for row in zip(*cols, strict=True))
    return (header + "\n" + body + "\n").encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=float, default=20.0)
    ap.add_argument("--impute", default="mean")
    args = ap.parse_args()
    data = mixed_csv(args.mib)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.csv"
        path.write_bytes(data)
        upload = {"path": str(path), "format": "csv", "fields": {"impute": args.impute}}
        out = subprocess.run(
            [sys.executable, "-m", "tests.api.upload_memory_probe", json.dumps([upload]),
             str(1024 * MiB)],
            cwd=REPO, capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["status"] == 201, r
    decoded, growth = r["decoded_bytes"], r["growth_bytes"]
    bound = 2 * decoded + 100 * MiB
    print(f"csv {len(data) / MiB:.1f} MiB -> decoded {decoded / MiB:.1f} MiB")
    print(f"seconds            {r['seconds']:.2f}  (goal 2.0; ratio {r['seconds'] / 2.0:.2f})")
    print(f"peak RSS growth    {growth / MiB:.0f} MiB  (bound 2x decoded + 100 MiB = "
          f"{bound / MiB:.0f} MiB; ratio {growth / bound:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
