"""The jobs API in-process on SQLite: auth, validation, storage, queueing, reads."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.db.session import session_factory
from api.ledger import metrics as metrics_repo
from api.ledger import repository as repo
from api.settings import Settings
from tests.conftest import FakeQueue

DIGITS = {"dataset": {"source": {"kind": "builtin", "name": "digits"}}}


def test_every_v1_route_needs_a_key(client: TestClient) -> None:
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer tf_nope_nope"},
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Basic abc"},
    ):
        r = client.get("/v1/jobs", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == 401
        r = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers)
        assert r.status_code == 401


def test_create_job_stores_then_publishes_the_id(client: TestClient, fake_queue: FakeQueue) -> None:
    r = client.post("/v1/jobs", json={"spec": DIGITS, "name": "first"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["attempt"] == 0 and job["name"] == "first"
    assert fake_queue.published == [(job["id"], "trainforge")]
    assert fake_queue.committed_before_publish == [True]
    # The resolved spec has every default filled in.
    spec = job["spec"]
    assert spec["dataset"]["validation_split"] == 0.2
    assert spec["dataset"]["batch_size"] == 32
    assert spec["model"]["kind"] == "mlp" and spec["optimizer"]["kind"] == "adam"
    assert spec["epochs"] == 10
    assert job["progress"] == {"epoch": 0, "epochs": 10, "step": 0}
    assert [t["to_status"] for t in job["transitions"]] == ["queued"]
    # The submit's answer (built without reading the job back) is what a GET reads.
    assert client.get(f"/v1/jobs/{job['id']}").json() == job


def test_the_answer_to_a_submit_is_the_stored_job_with_a_running_quota(
    client: TestClient,
) -> None:
    team = client.post("/v1/admin/teams", json={"name": "quota", "max_running_jobs": 1})
    assert team.status_code == 201, team.text
    key = client.post("/v1/admin/keys", json={"team": "quota", "role": "member"})
    assert key.status_code == 201, key.text
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    spec = {**DIGITS, "model": {"kind": "mlp", "hidden_units": [16]}, "epochs": 2}
    answers = [client.post("/v1/jobs", json={"spec": spec}, headers=headers) for _ in range(2)]
    for r in answers:
        assert r.status_code == 201, r.text
        assert client.get(f"/v1/jobs/{r.json()['id']}", headers=headers).json() == r.json()


def test_invalid_spec_is_a_422_naming_each_field(client: TestClient, fake_queue: FakeQueue) -> None:
    bad = {
        "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 0},
        "optimizer": {"kind": "sgd", "lr": -1},
        "epochs": 0,
    }
    r = client.post("/v1/jobs", json={"spec": bad})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    locs = {e["loc"] for e in r.json()["errors"]}
    assert {"spec.dataset.batch_size", "spec.optimizer.lr", "spec.epochs"} <= locs
    assert fake_queue.published == []
    assert client.get("/v1/jobs").json()["items"] == []


def test_unknown_kind_and_unknown_field_are_422(client: TestClient) -> None:
    r = client.post("/v1/jobs", json={"spec": {**DIGITS, "optimizer": {"kind": "lion"}}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "spec.optimizer"
    r = client.post("/v1/jobs", json={"spec": {**DIGITS, "epochz": 3}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "spec.epochz"


def test_semantic_problem_names_the_field(client: TestClient, fake_queue: FakeQueue) -> None:
    spec = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "model": {"kind": "cnn"}}
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 422, r.text
    assert "spec.model.kind" in {e["loc"] for e in r.json()["errors"]}
    assert fake_queue.published == []


def test_list_is_newest_first_with_cursor_pagination(client: TestClient) -> None:
    ids = [client.post("/v1/jobs", json={"spec": DIGITS}).json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert client.get("/v1/jobs", params={"status": "running"}).json()["items"] == []
    assert client.get("/v1/jobs", params={"cursor": "!!"}).status_code == 422


def test_a_listed_job_reads_as_the_job_itself(client: TestClient) -> None:
    # The listing is a summary (tests/api/test_job_list.py); each item is its own job's.
    ids = [client.post("/v1/jobs", json={"spec": DIGITS}).json()["id"] for _ in range(3)]
    assert client.post(f"/v1/jobs/{ids[1]}/cancel").status_code == 200
    listed = {j["id"]: j for j in client.get("/v1/jobs").json()["items"]}
    for job_id in ids:
        full = client.get(f"/v1/jobs/{job_id}").json()
        assert all(listed[job_id][k] == full[k] for k in ("status", "progress", "created_at"))
    assert len(client.get(f"/v1/jobs/{ids[1]}").json()["transitions"]) == 2
    assert client.get(f"/v1/jobs/{ids[0]}").json()["queue_reason"] == "waiting_for_worker"


def test_cancel_a_queued_job_is_immediate(client: TestClient) -> None:
    job = client.post("/v1/jobs", json={"spec": DIGITS}).json()
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "canceled" and body["status_reason"] == "canceled_by_user"
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409


def test_missing_job_is_404_problem(client: TestClient) -> None:
    r = client.get("/v1/jobs/doesnotexist")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


def test_metrics_are_grouped_by_series_and_filtered(client: TestClient, settings: Settings) -> None:
    job = client.post("/v1/jobs", json={"spec": DIGITS}).json()
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        attempt = repo.claim_job(s, job["id"], 30)
        assert attempt == 1
        metrics_repo.write_metrics(
            s,
            job["id"],
            1,
            [
                metrics_repo.Point("loss", 10, 0, 0.5),
                metrics_repo.Point("val_accuracy", 10, 0, 0.9),
                metrics_repo.Point("loss", 20, 1, 0.25),
                metrics_repo.Point("loss", 30, 2, float("inf")),
            ],
        )
        s.commit()
    body = client.get(f"/v1/jobs/{job['id']}/metrics").json()
    series = {s["name"]: s["points"] for s in body["series"]}
    assert [p["step"] for p in series["loss"]] == [10, 20, 30]
    assert series["loss"][2]["value"] == "Infinity"
    assert series["val_accuracy"] == [{"step": 10, "epoch": 0, "value": 0.9}]
    only = client.get(f"/v1/jobs/{job['id']}/metrics", params={"name": "val_accuracy"}).json()
    assert [s["name"] for s in only["series"]] == ["val_accuracy"]


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["checks"] == {"database": "ok", "broker": "ok"}


def test_sgd_nesterov_without_momentum_is_a_422_at_the_field(
    client: TestClient, fake_queue: FakeQueue
) -> None:
    # Issue 28, 1: it validated, then torch.optim.SGD failed the job at the worker.
    nesterov = {"kind": "sgd", "nesterov": True}
    r = client.post("/v1/jobs", json={"spec": {**DIGITS, "optimizer": nesterov}})
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["loc"] == "spec.optimizer.nesterov" and "momentum > 0" in error["msg"]
    assert fake_queue.published == []


def test_absurd_step_counts_are_a_422_that_shows_the_arithmetic(client: TestClient) -> None:
    # Issue 28, 7: 100,000 epochs x 8,000,000 steps per epoch used to validate.
    source = {"kind": "builtin", "name": "synthetic",
              "synthetic": {"n_samples": 10_000_000, "n_features": 1}}  # fmt: skip
    spec = {"dataset": {"source": source, "batch_size": 1}, "epochs": 100_000}
    for path in ("/v1/jobs", "/v1/specs/validate"):
        r = client.post(path, json={"spec": spec})
        assert r.status_code == 422, r.text
        errors = {e["loc"]: e["msg"] for e in r.json()["errors"]}
        msg = next(m for loc, m in errors.items() if loc.endswith("epochs"))
        assert "= 800000000000 optimizer steps" in msg and "1000000000" in msg


def test_devices_that_do_not_divide_the_global_batch_are_a_422(
    client: TestClient, fake_queue: FakeQueue
) -> None:
    """Issue 27: batch_size is the global batch; resources.devices must divide it."""
    spec = {
        "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 30},
        "resources": {"devices": 4},
    }
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 422, r.text
    errors = {e["loc"]: e["msg"] for e in r.json()["errors"]}
    assert "batch_size 30" in errors["spec.dataset.batch_size"]
    assert "devices 4" in errors["spec.dataset.batch_size"]
    assert fake_queue.published == []
