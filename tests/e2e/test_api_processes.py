"""`TRAINFORGE_API_PROCESSES=2` (issue 16): `trainforge up` serves its port from two API
processes, and concurrent submits, repeated Idempotency-Keys among them, are each stored
once and run, whichever process answered; `/metrics` counts the requests of both."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import trainforge_up, wait_status

pytestmark = pytest.mark.e2e

IRIS = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}
# Every request's timeout is a hang detector, not a latency bound (tests/e2e/test_load.py
# has that, run alone): on a starved 2-vCPU CI host one submit was answered after 60 s,
# and the listing after them took over httpx's default 5 s.
HANG = 180.0


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4: the parent's pid
            kids.append(int(entry))
    return kids


def _submits_counted(exposition: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "trainforge_http_requests_total"
        and sample.labels.get("route") == "/v1/jobs"
        and sample.labels.get("method") == "POST"
    )


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_two_api_processes_take_submits(tmp_path: Path) -> None:
    with trainforge_up(tmp_path, TRAINFORGE_API_PROCESSES="2") as up:
        api = [p for p in _children(up.proc.pid) if " api " in f"{_cmdline(p)} "]
        assert len(api) == 1, [_cmdline(p) for p in _children(up.proc.pid)]
        # Under it, uvicorn's worker processes (beside multiprocessing's resource tracker).
        serving = [p for p in _children(api[0]) if "spawn_main" in _cmdline(p)]
        assert len(serving) == 2, [_cmdline(p) for p in _children(api[0])]

        auth = {"Authorization": f"Bearer {up.key}"}

        def submit(i: int) -> httpx.Response:
            headers = auth | {"Idempotency-Key": f"two-processes-{i % 12}"}
            body = {"spec": IRIS, "name": f"p{i % 12}"}
            return httpx.post(f"{up.base}/v1/jobs", json=body, headers=headers, timeout=HANG)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(submit, range(24)))  # each key twice, maybe at once
        assert {r.status_code for r in answers} <= {200, 201}, [r.text for r in answers]
        ids = {r.json()["id"] for r in answers}
        assert len(ids) == 12  # one job per Idempotency-Key, whichever process answered
        listing = httpx.get(f"{up.base}/v1/jobs?limit=100", headers=auth, timeout=HANG)
        listed = listing.json()["items"]
        assert {j["id"] for j in listed} == ids
        with httpx.Client(base_url=up.base, headers=auth, timeout=HANG) as client:
            for job_id in ids:
                wait_status(client.get, job_id, {"succeeded"}, timeout=HANG)
        # Whichever process answers the scrape counts the submits that both answered.
        for _ in range(3):
            assert _submits_counted(httpx.get(f"{up.base}/metrics", timeout=HANG).text) == 24
