"""Run dataset uploads through a real HTTP server in a fresh process and report peak memory.

``python -m tests.api.upload_memory_probe UPLOADS_JSON MAX_DATASET_BYTES`` where UPLOADS_JSON
is a list of ``{"path", "format", "fields"}``. The API runs under uvicorn (in a thread of
this process, SQLite in a temporary home); each file is sent by an httpx client that streams
it from disk in 64 KiB pieces, so the process's memory is the server's. For each upload the
probe resets the peak (VmHWM, through /proc/self/clear_refs), posts, and prints one JSON
line: the status, the error types, the growth of the peak over the resident memory just
before, the seconds, and ``decoded_bytes``: the total size of the arrays the dataset
stores (x, y, or the texts and their offsets), read back from the database afterwards.
A small upload of each format runs first, so imports and first-use allocations are not
counted.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def _warmup(fmt: str) -> bytes:
    if fmt == "csv":
        return b"f,c,when,label\n1.5,a,2020-01-01,x\n2.5,b,2020-01-02,x\n3,a,,y\n4,b,2020-01-04,y\n"
    if fmt == "text_csv":
        return b"text,label\nsome words,a\nmore words,a\nother words,b\nlast words,b\n"
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _decoded_bytes(database_url: str, dataset_id: str) -> int:
    """The stored arrays' total size: what the upload decoded to."""
    from api.datasets import repository as repo
    from api.db.session import session_factory

    with session_factory(database_url)() as s:
        ds = s.get(repo.Dataset, dataset_id)
        assert ds is not None
        content = repo.read_content(s, ds)
    with np.load(io.BytesIO(content), allow_pickle=False) as npz:
        return sum(int(npz[k].nbytes) for k in npz.files)


def main() -> None:
    uploads: list[dict[str, Any]] = json.loads(sys.argv[1])
    max_dataset_bytes = int(sys.argv[2])
    import uvicorn

    from api.app import create_app
    from api.db.migrate import upgrade
    from api.db.session import session_factory
    from api.settings import Settings
    from api.teams.repository import DEFAULT_TEAM, create_api_key, get_or_create_team

    class NoQueue:
        def publish(self, job_id: str, queue: str) -> None:
            return None

        def ping(self) -> None:
            return None

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), max_dataset_bytes=max_dataset_bytes)
        settings.ensure_home()
        url = settings.resolved_database_url
        upgrade(url)
        with session_factory(url)() as s:
            _, key = create_api_key(s, get_or_create_team(s, DEFAULT_TEAM), "admin")
            s.commit()
        app = create_app(settings, queue=NoQueue())
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=600) as c:
            for fmt in sorted({u["format"] for u in uploads}):
                form = {"format": fmt, **({"impute": "mean"} if fmt == "csv" else {})}
                warm = c.post("/v1/datasets", data=form, files={"file": ("w", _warmup(fmt))})
                assert warm.status_code == 201, warm.text
            for u in uploads:
                form = {"format": u["format"], **{k: str(v) for k, v in u["fields"].items()}}
                with open(u["path"], "rb") as f:
                    before = _status_kib("VmRSS")
                    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
                    started = time.perf_counter()
                    r = c.post("/v1/datasets", data=form, files={"file": ("upload", f)})
                    seconds = time.perf_counter() - started
                    peak = _status_kib("VmHWM")
                body = r.json()
                ok = r.status_code < 400
                print(json.dumps({
                    "status": r.status_code,
                    "type": [] if ok else [e.get("type") for e in body.get("errors", [])],
                    "rss_before_kib": before,
                    "peak_kib": peak,
                    "growth_bytes": (peak - before) * 1024,
                    "seconds": seconds,  # for the benchmarks; tests assert no time
                    "decoded_bytes": _decoded_bytes(url, body["id"]) if ok else 0,
                }), flush=True)  # fmt: skip
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
