"""Issue 15 end to end on PostgreSQL + Redis with real `trainforge worker` processes:
/metrics against the API's own counts, job logs through the endpoint and the stream,
signed webhooks that survive failures and a SIGKILLed worker."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.queue import CeleryJobQueue
from api.settings import Settings
from api.teams.repository import create_api_key, get_or_create_team
from tests.api.test_events import parse_sse
from tests.conftest import REPO, free_port
from tests.integration.webhook_receiver import Receiver, receiver
from tests.procs import start_worker, stop, wait_status, worker_env

pytestmark = pytest.mark.integration

# Early stopping (patience 3) and a plateau schedule (patience 1) that both fire: with
# min_delta 10 only the first epoch improves, so the rate drops after epochs 2-4 and
# training stops at epoch 4.
PLATEAU_AND_EARLY_STOP = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 32},
    "schedule": {"kind": "reduce_on_plateau", "patience": 1, "min_delta": 10, "factor": 0.5},
    "early_stopping": {"patience": 3, "min_delta": 10},
    "epochs": 20,
}
FAST_WORKER = {
    "TRAINFORGE_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on 127.0.0.1
    "TRAINFORGE_WEBHOOK_POLL_SECONDS": "0.2",
    "TRAINFORGE_WEBHOOK_RETRY_BASE_SECONDS": "0.2",  # 0.2 s, 0.8 s, ... instead of 10 s, 40 s
    "TRAINFORGE_WORKER_HEARTBEAT_SECONDS": "0.5",
}
EVENTS = ["job.started", "job.succeeded", "job.failed", "job.canceled"]


@pytest.fixture
def pg_settings(pg_url: str, redis_url: str, tmp_path: Path) -> Settings:
    upgrade(pg_url)
    return Settings(
        home=tmp_path,
        database_url=pg_url,
        broker_url=redis_url,
        queue=f"tf-ops-{secrets.token_hex(4)}",
        heartbeat_seconds=0.5,
        worker_heartbeat_seconds=0.5,
        webhook_allow_private=True,
    )


@pytest.fixture
def api(pg_settings: Settings) -> Iterator[TestClient]:
    with session_factory(pg_settings.resolved_database_url)() as s:
        team = get_or_create_team(s, f"team-{secrets.token_hex(3)}")
        _, key = create_api_key(s, team, "admin")
        s.commit()
    app = create_app(pg_settings, queue=CeleryJobQueue(pg_settings))
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout}s: {what}")


def scrape(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def register(client: TestClient, hook: Receiver) -> str:
    r = client.post("/v1/webhooks", json={"url": hook.url, "events": EVENTS})
    assert r.status_code == 201, r.text
    hook.secret = r.json()["secret"]
    return str(r.json()["id"])


def test_a_job_is_logged_measured_and_announced_once_per_event(
    pg_settings: Settings, api: TestClient, tmp_path: Path
) -> None:
    worker = start_worker(pg_settings, tmp_path, "worker", **FAST_WORKER)
    try:
        with receiver(fail_first=2) as hook:
            webhook_id = register(api, hook)
            job = api.post("/v1/jobs", json={"spec": PLATEAU_AND_EARLY_STOP}).json()
            done = wait_status(api.get, job["id"], {"succeeded", "failed"}, 180)
            assert (done["status"], done["status_reason"]) == ("succeeded", "early_stopped")

            # Webhooks: 500, 500, then 200 -- still exactly one accepted delivery per event.
            eventually(lambda: len(hook.accepted_types(job["id"])) == 2, 60, "two deliveries")
            assert hook.accepted_types(job["id"]) == ["job.started", "job.succeeded"]
            assert hook.bad_signatures == 0 and set(hook.attempts.values()) == {3}

            # The receiver has answered the third attempt; the deliverer records it just after.
            def recorded() -> list[dict[str, Any]] | None:
                items = api.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["items"]
                return items if all(d["status"] != "pending" for d in items) else None

            deliveries = eventually(recorded, 30, "both deliveries recorded")
            assert [(d["status"], d["attempts"]) for d in deliveries] == [("delivered", 3)] * 2
            codes = [a["status_code"] for a in deliveries[0]["history"]]
            assert codes == [500, 500, 200]

        # Logs, through the endpoint: both events, in the order they happened.
        logs = api.get(f"/v1/jobs/{job['id']}/logs", params={"limit": 1000}).json()["items"]
        messages = [line["message"] for line in logs]
        assert messages[0].startswith("attempt 1 started on worker ")
        # The worker says which thread count it chose and why, the engine what it runs on.
        assert messages[1] == "1 CPU thread(s): TRAINFORGE_TORCH_THREADS", messages[:3]
        assert messages[2].startswith("training on cpu with 1 CPU thread(s)"), messages[:3]
        plateau = [i for i, m in enumerate(messages) if m.startswith("reduce_on_plateau:")]
        stopped = [i for i, m in enumerate(messages) if m.startswith("early stopping fired")]
        assert plateau and len(stopped) == 1 and plateau[0] < stopped[0], messages
        assert messages[-1] == f"job {job['id']} attempt 1 succeeded (early_stopped)"
        # ... and through the stream, as `log` events in the same order.
        with api.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
            events = [e for e in parse_sse(r.iter_lines()) if e.id is not None]
        streamed = [ln["message"] for e in events if e.event == "log" for ln in e.json["lines"]]
        assert streamed == messages
        assert events[-1].event == "end"

        # /metrics: the job counts are the API's; the latency histograms have observations.
        listed = api.get("/v1/jobs", params={"limit": 100}).json()["items"]
        m = scrape(api)
        jobs = {
            lb["status"]: v for lb, v in m["trainforge_jobs"] if lb["queue"] == pg_settings.queue
        }
        assert jobs == {"succeeded": float(len(listed))} == {"succeeded": 1.0}
        queue = {"queue": pg_settings.queue}
        wait = [v for lb, v in m["trainforge_job_queue_wait_seconds_count"] if lb == queue]
        assert wait == [1.0]
        runs = m["trainforge_job_run_seconds_count"]
        assert [v for lb, v in runs if lb == {**queue, "status": "succeeded"}] == [1.0]
        http = m["trainforge_http_request_duration_seconds_count"]
        assert any(lb["route"] == "/v1/jobs/{job_id}" and v > 0 for lb, v in http)
        ended = m["trainforge_jobs_ended_total"]
        assert ({"status": "succeeded", "status_reason": "early_stopped"}, 1.0) in ended
        assert m["trainforge_workers_alive"][0][1] >= 1
    finally:
        stop(worker)
    # The worker's own log names the job and its real outcome.
    log = (tmp_path / "worker.log").read_text()
    assert f"job {job['id']} attempt 1 succeeded (early_stopped)" in log
    assert "succeeded in" not in log or "None" not in log.split("succeeded in", 1)[1][:40]


def test_a_worker_killed_after_the_status_change_loses_no_delivery(
    pg_settings: Settings, api: TestClient, tmp_path: Path
) -> None:
    spec = {**PLATEAU_AND_EARLY_STOP, "early_stopping": None, "epochs": 2}
    with receiver(fail_first=0) as hook:
        register(api, hook)
        # Worker A runs the job but sends nothing (its sender is off), then dies: the
        # status changes are committed with their outbox rows and nobody has sent them.
        a = start_worker(pg_settings, tmp_path, "a", **FAST_WORKER, TRAINFORGE_WEBHOOK_SENDER="0")
        try:
            job = api.post("/v1/jobs", json={"spec": spec}).json()
            wait_status(api.get, job["id"], {"succeeded"}, 180)
        finally:
            os.killpg(a.pid, signal.SIGKILL)
            a.wait()
        time.sleep(1)
        assert hook.accepted_types(job["id"]) == []
        b = start_worker(pg_settings, tmp_path, "b", **FAST_WORKER)
        try:
            eventually(lambda: len(hook.accepted_types(job["id"])) == 2, 90, "two deliveries")
            time.sleep(1)  # nothing more arrives
            assert hook.accepted_types(job["id"]) == ["job.started", "job.succeeded"]
            assert set(hook.attempts.values()) == {1}
        finally:
            stop(b)


@pytest.mark.parametrize("url", ["http://169.254.169.254/", "http://127.0.0.1/"])
def test_private_targets_are_refused_when_the_operator_has_not_allowed_them(
    pg_settings: Settings, api: TestClient, url: str
) -> None:
    api.app.state.settings = pg_settings.model_copy(  # type: ignore[attr-defined]
        update={"webhook_allow_private": False}
    )
    r = api.post("/v1/webhooks", json={"url": url, "events": ["job.failed"]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "url", r.text


def test_trainforge_worker_metrics_port_serves_its_own_metrics(
    pg_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    with (tmp_path / "w.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainforge", "worker", "--metrics-port", str(port)],
            env=worker_env(pg_settings, tmp_path, **FAST_WORKER),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def scrape_worker() -> str | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
            except httpx.HTTPError:
                return None

        text = eventually(scrape_worker, 120, "the worker's /metrics")
        busy = [
            s
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "trainforge_worker_busy"
        ]
        assert len(busy) == 1 and busy[0].value == 0.0 and busy[0].labels["worker"]
    finally:
        stop(proc)
