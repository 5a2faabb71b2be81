"""The worker side of issue 15 on SQLite: the webhook sender's rules (signatures, retries,
no redirects, refused addresses) and the worker's own /metrics (job_id only while running)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from api.db.models import utcnow
from api.db.session import session_factory
from api.settings import Settings
from api.teams.repository import get_or_create_team
from api.webhooks import repository as repo
from api.webhooks.models import WebhookDelivery
from api.webhooks.signing import new_secret
from tests.conftest import free_port
from worker.metrics_server import RUNNING, _cuda, serve
from worker.webhooks import deliver_due, http_client


@contextmanager
def server(answers: list[tuple[int, dict[str, str]]]) -> Iterator[tuple[str, list[Any]]]:
    """Answers the given (status, headers) in turn (the last one for ever)."""
    seen: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status, headers = answers[min(len(seen), len(answers)) - 1]
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def enqueue(settings: Settings, url: str) -> tuple[str, str]:
    """A webhook for `url` and one test delivery; returns (delivery id, secret)."""
    secret = new_secret()
    with session_factory(settings.resolved_database_url)() as s:
        team = get_or_create_team(s, "t")
        hook = repo.create_webhook(s, team.id, url, ["job.failed"], secret, None)
        delivery = repo.enqueue_test(s, hook, utcnow())
        s.commit()
        return delivery.id, secret


def delivery(settings: Settings, delivery_id: str) -> WebhookDelivery:
    with session_factory(settings.resolved_database_url)() as s:
        found = s.get(WebhookDelivery, delivery_id)
        assert found is not None
        return found


def make_due(settings: Settings, delivery_id: str) -> None:
    """Skip the backoff wait (the test does not sleep through it)."""
    with session_factory(settings.resolved_database_url)() as s:
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        s.commit()


def send(settings: Settings) -> list[tuple[str, str]]:
    factory = session_factory(settings.resolved_database_url)
    with http_client(settings) as client:
        return deliver_due(settings, factory, client)


@pytest.mark.e2e
def test_a_delivery_is_signed_retried_and_then_done(settings: Settings) -> None:
    s = settings.model_copy(update={"webhook_allow_private": True})
    with server([(500, {}), (204, {})]) as (url, seen):
        delivery_id, secret = enqueue(s, url)
        assert send(s) == [(delivery_id, "pending")]
        assert send(s) == []  # not due yet: it waits its backoff
        d = delivery(s, delivery_id)
        wait = (d.next_attempt_at - utcnow()).total_seconds()  # type: ignore[operator]
        assert 0.8 * 10 - 1 <= wait <= 1.2 * 10  # the first retry: 10 s ± 20%
        make_due(s, delivery_id)
        assert send(s) == [(delivery_id, "delivered")]
        assert send(s) == []
    (h1, b1), (h2, b2) = seen
    assert h1["webhook-id"] == h2["webhook-id"] == delivery_id and b1 == b2
    # The Standard Webhooks signature, recomputed here from the spec.
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{delivery_id}.{h2['webhook-timestamp']}.".encode() + b2
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert h2["webhook-signature"] == f"v1,{expected}"
    assert json.loads(b2)["type"] == "webhook.test"
    d = delivery(s, delivery_id)
    assert (d.status, d.attempts, [a["status_code"] for a in d.history]) == (
        "delivered",
        2,
        [500, 204],
    )


@pytest.mark.e2e
def test_redirects_are_not_followed_and_attempts_run_out(settings: Settings) -> None:
    s = settings.model_copy(update={"webhook_allow_private": True, "webhook_max_attempts": 2})
    with server([(307, {"location": "http://169.254.169.254/"})]) as (url, seen):
        delivery_id, _ = enqueue(s, url)
        send(s)
        make_due(s, delivery_id)
        assert send(s) == [(delivery_id, "failed")]
    d = delivery(s, delivery_id)
    assert d.status == "failed" and d.attempts == 2 and len(seen) == 2
    assert d.last_error == "redirects are not followed" and d.next_attempt_at is None


@pytest.mark.e2e
def test_a_private_address_is_refused_again_at_delivery(settings: Settings) -> None:
    # Registered while allowed (or while its DNS pointed elsewhere); now it is refused.
    with server([(200, {})]) as (url, seen):
        delivery_id, _ = enqueue(settings, url)
        assert send(settings) == [(delivery_id, "pending")]
    d = delivery(settings, delivery_id)
    assert seen == [] and d.last_error is not None and d.last_error.startswith("refused: ")


def test_the_worker_endpoint_labels_the_job_only_while_it_runs() -> None:
    port = free_port()
    serve(port, "w1", host="127.0.0.1")

    def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=120).text
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((sample.labels, sample.value))
        return out

    assert scrape()["trainforge_worker_busy"] == [({"worker": "w1"}, 0.0)]
    RUNNING.start("job1", 1, batch_size=32)
    track = RUNNING.track(lambda epoch, step: None)
    track(0, 32)
    track(0, 64)
    m = scrape()
    assert m["trainforge_worker_busy"] == [({"worker": "w1"}, 1.0)]
    [(labels, step_seconds)] = m["trainforge_worker_job_step_seconds"]
    assert labels == {"worker": "w1", "job_id": "job1"} and step_seconds > 0
    [(_, rate)] = m["trainforge_worker_job_samples_per_second"]
    assert abs(rate - 32 / step_seconds) < 1e-6 * rate
    RUNNING.end()
    assert not any("job_id" in lb for samples in scrape().values() for lb, _ in samples)


def test_cuda_gauges_report_each_device_and_leave_out_utilization_without_nvml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CUDA series as a GPU host shows them (torch.cuda stood in for; the next test
    reads a real device where there is one)."""

    class Props:
        total_memory = 80 * 2**30

    def utilization(index: int) -> int:
        if index == 1:
            raise RuntimeError("pynvml does not seem to be installed")
        return 37

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 1000 * (i + 1))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 2000 * (i + 1))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props())
    monkeypatch.setattr(torch.cuda, "utilization", utilization)
    got = {family.name: {s.labels["device"]: s.value for s in family.samples} for family in _cuda()}
    assert got == {
        "trainforge_worker_cuda_memory_allocated_bytes": {"0": 1000.0, "1": 2000.0},
        "trainforge_worker_cuda_memory_reserved_bytes": {"0": 2000.0, "1": 4000.0},
        "trainforge_worker_cuda_memory_total_bytes": {"0": 80.0 * 2**30, "1": 80.0 * 2**30},
        "trainforge_worker_cuda_utilization_ratio": {"0": 0.37},
    }


def test_no_cuda_series_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert list(_cuda()) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gauges_read_the_real_device() -> None:
    held = torch.ones(1024, 1024, device="cuda")  # 4 MiB that torch has allocated
    got = {f.name: {s.labels["device"]: s.value for s in f.samples} for f in _cuda()}
    allocated = got["trainforge_worker_cuda_memory_allocated_bytes"]["0"]
    reserved = got["trainforge_worker_cuda_memory_reserved_bytes"]["0"]
    assert allocated >= held.numel() * held.element_size()
    assert got["trainforge_worker_cuda_memory_total_bytes"]["0"] >= reserved >= allocated
    for ratio in got.get("trainforge_worker_cuda_utilization_ratio", {}).values():
        assert 0.0 <= ratio <= 1.0
    uuids = {s.labels["uuid"] for f in _cuda() for s in f.samples}
    assert len(uuids) == 1 and uuids.pop().startswith("GPU-")  # the card, as nvidia-smi -L
    assert "trainforge_worker_cuda_utilization_ratio" in got  # NVML: nvidia-ml-py is installed
