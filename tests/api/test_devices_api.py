"""Devices through the API (issue 27): a 422 when no worker could ever give a job its
``resources.devices``, ``queue_reason: waiting_for_devices`` while none alive can yet,
and the workers' devices in ``GET /v1/admin/workers``."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from api.db.session import session_factory
from api.ledger import scheduling, workers
from api.ledger.devices import Pool
from api.monitoring.ledger import read_ledger
from api.settings import Settings


def _spec(devices: int) -> dict[str, Any]:
    return {
        "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 32},
        "epochs": 1,
        "resources": {"device": "cpu", "devices": devices},
    }


def _problem_at_devices(answer: Any) -> str:
    assert answer.status_code == 422, answer.text
    found = [e for e in answer.json()["errors"] if e["loc"] == "spec.resources.devices"]
    assert found, answer.json()
    return str(found[0]["msg"])


def test_more_devices_than_any_worker_may_have_is_a_422_naming_both(client: TestClient) -> None:
    msg = _problem_at_devices(client.post("/v1/jobs", json={"spec": _spec(9)}))
    assert "9 devices" in msg and "is 8" in msg and "TRAINFORGE_MAX_DEVICES_PER_JOB" in msg
    msg = _problem_at_devices(client.post("/v1/specs/validate", json={"spec": _spec(9)}))
    assert "9 devices" in msg
    assert client.post("/v1/jobs", json={"spec": _spec(8)}).status_code == 201


def test_more_devices_than_the_team_quota_is_a_422(client: TestClient) -> None:
    team = client.get("/v1/admin/teams").json()["items"][0]
    assert client.patch(f"/v1/admin/teams/{team['id']}", json={"max_running_jobs": 2}).is_success
    msg = _problem_at_devices(client.post("/v1/jobs", json={"spec": _spec(3)}))
    assert "3 devices" in msg and "max_running_jobs quota is 2" in msg


def test_a_job_waits_for_devices_until_a_worker_big_enough_is_alive(
    client: TestClient, settings: Settings
) -> None:
    job = client.post("/v1/jobs", json={"spec": _spec(2)}).json()
    assert job["queue_reason"] == "waiting_for_devices"  # no worker at all
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        workers.beat(s, "small", settings.queue, devices=1)
        s.commit()
    assert client.get(f"/v1/jobs/{job['id']}").json()["queue_reason"] == "waiting_for_devices"
    with factory() as s:
        workers.beat(s, "big", settings.queue, devices=3, device_pool="host-a")
        s.commit()
    assert client.get(f"/v1/jobs/{job['id']}").json()["queue_reason"] == "waiting_for_worker"
    one = client.post("/v1/jobs", json={"spec": _spec(1)}).json()
    assert one["queue_reason"] == "waiting_for_worker"
    four = client.post("/v1/jobs", json={"spec": _spec(4)}).json()
    assert four["queue_reason"] == "waiting_for_devices"  # the biggest alive offers 3
    with factory() as s:  # /metrics counts them the same way
        queued = read_ledger(s).queued
    assert queued[(settings.queue, "waiting_for_devices")] == 1
    assert queued[(settings.queue, "waiting_for_worker")] == 2


def test_the_admin_view_shows_each_workers_devices_and_which_are_free(
    client: TestClient, settings: Settings
) -> None:
    job = client.post("/v1/jobs", json={"spec": _spec(2)}).json()
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        workers.beat(s, "w-a", settings.queue, devices=3, device_pool="host-a")
        workers.beat(s, "w-b", settings.queue, devices=3, device_pool="host-a")
        workers.beat(s, "w-c", settings.queue, devices=1)
        claimed = scheduling.claim_next(s, settings.queue, 30, Pool("host-a", 3))
        s.commit()
    assert claimed is not None and claimed.job_id == job["id"]
    answer = client.get("/v1/admin/workers")
    assert answer.status_code == 200, answer.text
    by_id = {w["id"]: w for w in answer.json()["items"]}
    for shared in ("w-a", "w-b"):  # one pool, seen from both of its workers
        w = by_id[shared]
        assert (w["devices"], w["device_pool"], w["alive"]) == (3, "host-a", True)
        assert w["free_devices"] == [2] and w["reserved"] == {job["id"]: [0, 1]}
    assert by_id["w-c"]["free_devices"] == [0] and by_id["w-c"]["device_pool"] == "w-c"
