"""Issue 15 in-process on SQLite: /metrics, job logs, webhook registration and its outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.db.models import utcnow
from api.db.session import session_factory
from api.joblogs import repository as joblogs
from api.ledger import repository as repo
from api.monitoring import http_metrics
from api.settings import Settings
from api.teams.repository import create_api_key, get_or_create_team
from api.webhooks.models import WebhookDelivery
from tests.conftest import FakeQueue

DIGITS = {"dataset": {"source": {"kind": "builtin", "name": "digits"}}}


def scrape(client: TestClient, **headers: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def http_series() -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in (*http_metrics.REQUESTS.collect(), *http_metrics.LATENCY.collect()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def delta(
    before: dict[str, list[tuple[dict[str, str], float]]],
    after: dict[str, list[tuple[dict[str, str], float]]],
    name: str,
    keys: tuple[str, ...],
) -> dict[tuple[str, ...], float]:
    """What a series gained between two scrapes, summed by the given labels (non-zero only)."""
    out: dict[tuple[str, ...], float] = {}
    for sign, scraped in ((-1, before), (1, after)):
        for labels, value in scraped.get(name, []):
            key = tuple(labels[k] for k in keys)
            out[key] = out.get(key, 0.0) + sign * value
    return {k: v for k, v in out.items() if v}


def test_metrics_count_jobs_as_the_api_does_and_label_routes_by_template(
    client: TestClient,
) -> None:
    # The HTTP series are process-wide (other tests in this process count too): deltas.
    # (Read in-process: a scrape now would also cache the ledger for the next 2 s.)
    before = http_series()
    ids = [client.post("/v1/jobs", json={"spec": DIGITS}).json()["id"] for _ in range(3)]
    assert client.post(f"/v1/jobs/{ids[0]}/cancel").status_code == 200
    client.get(f"/v1/jobs/{ids[1]}")
    client.get("/v1/jobs/no-such-job")
    client.get("/nowhere/at/all")
    listed = client.get("/v1/jobs", params={"limit": 100}).json()["items"]
    by_status: dict[str, int] = {}
    for job in listed:
        by_status[job["status"]] = by_status.get(job["status"], 0) + 1
    m = scrape(client)
    jobs = {labels["status"]: v for labels, v in m["trainforge_jobs"]}
    assert jobs == by_status == {"queued": 2, "canceled": 1}
    assert {(lb["queue"], lb["queue_reason"]): v for lb, v in m["trainforge_jobs_queued"]} == {
        ("trainforge", "waiting_for_worker"): 2
    }
    ended = {(lb["status"], lb["status_reason"]): v for lb, v in m["trainforge_jobs_ended_total"]}
    assert ended == {("canceled", "canceled_by_user"): 1}
    routes = {lb["route"] for lb, _ in m["trainforge_http_requests_total"]}
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "unmatched"} <= routes
    assert not any(job_id in route for route in routes for job_id in ids)
    count = delta(before, m, "trainforge_http_request_duration_seconds_count", ("route", "method"))
    assert count[("/v1/jobs/{job_id}", "GET")] == 2
    requests = delta(before, m, "trainforge_http_requests_total", ("route", "status"))
    statuses = {status for (route, status), n in requests.items() if route == "/v1/jobs/{job_id}"}
    assert statuses == {"200", "404"}
    assert m["trainforge_workers_alive"] == [({}, 0.0)]


def test_queued_jobs_by_reason_are_the_apis(client: TestClient) -> None:
    client.post("/v1/jobs", json={"spec": DIGITS})
    gpu = {**DIGITS, "resources": {"device": "cuda"}}
    assert client.post("/v1/jobs", json={"spec": gpu}).json()["queue_reason"] == "waiting_for_gpu"
    queued = {
        (lb["queue"], lb["queue_reason"]): v for lb, v in scrape(client)["trainforge_jobs_queued"]
    }
    assert queued == {
        ("trainforge", "waiting_for_worker"): 1,
        ("trainforge.cuda", "waiting_for_gpu"): 1,
    }


@pytest.fixture
def token_client(settings: Settings, fake_queue: FakeQueue) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"metrics_token": "s3cret"}), queue=fake_queue)
    with TestClient(app) as c:
        yield c


def test_metrics_need_the_token_when_one_is_set(token_client: TestClient) -> None:
    assert token_client.get("/metrics").status_code == 401
    assert token_client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert "trainforge_workers_alive" in scrape(token_client, Authorization="Bearer s3cret")


def _running_job(settings: Settings, client: TestClient) -> tuple[str, int]:
    job_id = client.post("/v1/jobs", json={"spec": DIGITS}).json()["id"]
    with session_factory(settings.resolved_database_url)() as s:
        attempt = repo.claim_job(s, job_id, 30)
        s.commit()
    assert attempt is not None
    return job_id, attempt


def test_job_logs_page_by_id_and_keep_the_newest_lines(
    client: TestClient, settings: Settings
) -> None:
    job_id, attempt = _running_job(settings, client)
    now = utcnow()
    with session_factory(settings.resolved_database_url)() as s:
        for batch in range(3):
            lines = [joblogs.Line(now, "info", "engine", f"line {batch * 5 + i}") for i in range(5)]
            joblogs.write_lines(s, job_id, attempt, lines, max_lines=12)
        s.commit()
    first = client.get(f"/v1/jobs/{job_id}/logs", params={"limit": 5}).json()
    # 15 written, 12 kept: the three oldest were dropped.
    assert [x["message"] for x in first["items"]] == [f"line {i}" for i in range(3, 8)]
    rest = client.get(f"/v1/jobs/{job_id}/logs", params={"after": first["last_id"]}).json()
    assert [x["message"] for x in rest["items"]] == [f"line {i}" for i in range(8, 15)]
    empty = client.get(f"/v1/jobs/{job_id}/logs", params={"after": rest["last_id"]}).json()
    assert empty == {"items": [], "last_id": rest["last_id"], "next_cursor": None}
    assert first["next_cursor"] == str(first["last_id"]) and rest["next_cursor"] is None
    assert client.get("/v1/jobs/nope/logs").status_code == 404
    bad = client.get(f"/v1/jobs/{job_id}/logs", params={"limit": 0})
    assert bad.status_code == 422 and "limit" in bad.text


def test_a_webhook_is_registered_with_a_secret_shown_once(
    client: TestClient, settings: Settings
) -> None:
    r = client.post(
        "/v1/webhooks",
        json={"url": "http://localhost:9/hook", "events": ["job.failed", "job.canceled"]},
    )
    assert r.status_code == 422, r.text  # localhost is loopback: the operator setting is off
    allow = settings.model_copy(update={"webhook_allow_private": True})
    client.app.state.settings = allow  # type: ignore[attr-defined]
    r = client.post(
        "/v1/webhooks",
        json={"url": "http://localhost:9/hook", "events": ["job.failed", "job.canceled"]},
    )
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["job.canceled", "job.failed"]
    listed = client.get("/v1/webhooks").json()["items"]
    assert listed == [{k: v for k, v in hook.items() if k != "secret"}]
    assert "secret" not in client.get(f"/v1/webhooks/{hook['id']}").json()
    # A status change writes its delivery in the same transaction; nothing is sent by the API.
    job_id = client.post("/v1/jobs", json={"spec": DIGITS}).json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel")
    test = client.post(f"/v1/webhooks/{hook['id']}/test")
    assert test.status_code == 202 and test.json()["event_type"] == "webhook.test"
    deliveries = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
    assert [(d["event_type"], d["status"], d["attempts"]) for d in deliveries] == [
        ("webhook.test", "pending", 0),
        ("job.canceled", "pending", 0),
    ]
    assert deliveries[1]["job_id"] == job_id and deliveries[1]["next_attempt_at"] is not None
    url = f"/v1/webhooks/{hook['id']}/deliveries"
    first = client.get(url, params={"limit": 1}).json()
    second = client.get(url, params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in first["items"] + second["items"]] == [d["id"] for d in deliveries]
    assert second["next_cursor"] is None
    assert client.get(url, params={"cursor": "garbage!"}).status_code == 422
    with session_factory(settings.resolved_database_url)() as s:
        body = s.get(WebhookDelivery, deliveries[1]["id"]).body  # type: ignore[union-attr]
    assert '"type":"job.canceled"' in body and '"status_reason":"canceled_by_user"' in body
    # Another team sees none of it.
    with session_factory(settings.resolved_database_url)() as s:
        other = get_or_create_team(s, "other")
        _, key = create_api_key(s, other, "member")
        s.commit()
    them = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/webhooks", headers=them).json()["items"] == []
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/test"), ("GET", "/deliveries")):
        r = client.request(method, f"/v1/webhooks/{hook['id']}{path}", headers=them)
        assert r.status_code == 404, (method, path)
    assert client.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert client.get("/v1/webhooks").json()["items"] == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://127.0.0.1/", "127.0.0.1"),
        ("http://10.1.2.3:8080/x", "10.1.2.3"),
        ("http://[::1]/", "::1"),
        ("http://[::ffff:127.0.0.1]/", "127.0.0.1"),
        ("ftp://example.com/", "http"),
        ("file:///etc/passwd", "http"),
        ("http://user:pw@example.com/", "credentials"),
    ],
)
def test_unsafe_webhook_urls_are_refused(client: TestClient, url: str, why: str) -> None:
    r = client.post("/v1/webhooks", json={"url": url, "events": ["job.succeeded"]})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == "url" and why in r.json()["errors"][0]["msg"]


def test_bad_webhook_bodies_are_422s_naming_the_field(client: TestClient) -> None:
    for body, field in (
        ({"url": "https://example.com/", "events": []}, "events"),
        ({"url": "https://example.com/", "events": ["job.exploded"]}, "events"),
        ({"events": ["job.failed"]}, "url"),
    ):
        r = client.post("/v1/webhooks", json=body)
        assert r.status_code == 422 and field in r.text, r.text


def test_backoff_grows_fourfold_with_jitter() -> None:
    from api.webhooks.repository import backoff_seconds

    waits = [backoff_seconds(n, 10.0) for n in range(1, 6)]
    for n, wait in enumerate(waits, start=1):
        assert 0.8 * 10 * 4 ** (n - 1) <= wait <= 1.2 * 10 * 4 ** (n - 1)
    assert timedelta(seconds=sum(waits)) > timedelta(minutes=45)  # about an hour in all


def test_a_canceled_sweep_queues_one_sweep_ended_delivery(
    client: TestClient, settings: Settings
) -> None:
    from tests.sweeps.test_sweep_flow import SWEEP

    client.app.state.settings = settings.model_copy(  # type: ignore[attr-defined]
        update={"webhook_allow_private": True}
    )
    hook = client.post(
        "/v1/webhooks", json={"url": "http://localhost:9/", "events": ["sweep.ended"]}
    ).json()
    sweep = client.post("/v1/sweeps", json=SWEEP).json()
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 200
    deliveries = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
    assert [d["event_type"] for d in deliveries] == ["sweep.ended"]  # not its trials' cancels
    with session_factory(settings.resolved_database_url)() as s:
        body = json.loads(s.get(WebhookDelivery, deliveries[0]["id"]).body)  # type: ignore[union-attr]
    assert body["data"]["sweep_id"] == sweep["id"] and body["data"]["status"] == "canceled"
