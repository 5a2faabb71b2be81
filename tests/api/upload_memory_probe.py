"""Run one dataset upload through the API in a fresh process and report its peak memory.

``python -m tests.api.upload_memory_probe FILE FORMAT FIELDS_JSON MAX_DATASET_BYTES`` prints
one JSON line: the status, the process's resident memory just before the upload and its
peak (VmHWM, reset just before the upload through /proc/self/clear_refs) during it.
A small upload of the same format runs first, so imports and first-use allocations are
not counted.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def _warmup(fmt: str) -> bytes:
    if fmt == "csv":
        return b"f,c,when,label\n1.5,a,2020-01-01,x\n2.5,b,2020-01-02,x\n3,a,,y\n4,b,2020-01-04,y\n"
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, x=np.arange(64, dtype=np.int8).reshape(16, 4), y=np.arange(16) % 2)
        return buf.getvalue()
    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(4):
            png = io.BytesIO()
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(png, format="PNG")
            zf.writestr(f"c{i % 2}/{i}.png", png.getvalue())
    return buf.getvalue()


def main() -> None:
    path, fmt, fields_json, max_dataset_bytes = sys.argv[1:5]
    fields: dict[str, Any] = json.loads(fields_json)
    from api.app import create_app
    from api.db.keys import DEFAULT_TEAM, create_api_key, get_or_create_team
    from api.db.migrate import upgrade
    from api.db.session import session_factory
    from api.settings import Settings

    class NoQueue:
        def publish(self, job_id: str, queue: str) -> None:
            return None

        def ping(self) -> None:
            return None

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), max_dataset_bytes=int(max_dataset_bytes))
        settings.ensure_home()
        upgrade(settings.resolved_database_url)
        with session_factory(settings.resolved_database_url)() as s:
            _, key = create_api_key(s, get_or_create_team(s, DEFAULT_TEAM), "admin")
            s.commit()
        app = create_app(settings, queue=NoQueue())  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {key}"}
        with TestClient(app, headers=headers) as client:
            form = {"format": fmt, **{k: str(v) for k, v in fields.items()}}
            warm = client.post("/v1/datasets", data=form, files={"file": ("w", _warmup(fmt))})
            assert warm.status_code == 201, warm.text
            data = Path(path).read_bytes()
            before = _status_kib("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            started = time.perf_counter()
            r = client.post("/v1/datasets", data=form, files={"file": ("upload", data)})
            seconds = time.perf_counter() - started
            peak = _status_kib("VmHWM")
    body = r.json()
    print(json.dumps({
        "status": r.status_code,
        "type": [e.get("type") for e in body.get("errors", [])] if r.status_code >= 400 else [],
        "rss_before_kib": before,
        "peak_kib": peak,
        "growth_bytes": (peak - before) * 1024,
        "seconds": seconds,  # for bench/csv_upload.py; tests assert no time
        "decoded_bytes": body.get("n_samples", 0) * (body.get("n_features", 0) * 4 + 8)
        if r.status_code < 400
        else 0,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
