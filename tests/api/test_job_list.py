"""GET /v1/jobs (issue 17): a summary per job, `name` search, the monitored best metric."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from api.db.session import session_factory
from api.ledger import metrics as metrics_repo
from api.ledger import repository as repo
from api.settings import Settings

DIGITS = {"dataset": {"source": {"kind": "builtin", "name": "digits"}}}
SUMMARY_KEYS = {"id", "name", "status", "status_reason", "progress", "best_metric", "sweep_id",
                "pack_id", "created_at", "started_at", "finished_at"}  # fmt: skip


def test_the_list_is_a_summary_of_each_job(client: TestClient) -> None:
    ids = [client.post("/v1/jobs", json={"spec": DIGITS, "name": f"j{i}"}).json()["id"]
           for i in range(3)]  # fmt: skip
    assert client.post(f"/v1/jobs/{ids[1]}/cancel").status_code == 200
    page = client.get("/v1/jobs", params={"limit": 20})
    listed = {j["id"]: j for j in page.json()["items"]}
    assert list(listed) == ids[::-1]  # newest first
    for job_id in ids:
        summary, full = listed[job_id], client.get(f"/v1/jobs/{job_id}").json()
        assert set(summary) == SUMMARY_KEYS  # no spec, no transitions
        assert summary == {k: full.get(k) for k in SUMMARY_KEYS if k != "best_metric"} | {
            "best_metric": None
        }
    assert listed[ids[1]]["status_reason"] == "canceled_by_user"
    per_item = len(page.content) / 3
    assert per_item < 600, per_item  # the full job is several kB (its resolved spec)
    assert len(json.dumps(client.get(f"/v1/jobs/{ids[0]}").json())) > 4 * per_item


def test_name_search_is_a_case_insensitive_substring(client: TestClient) -> None:
    for name in ("ResNet baseline", "resnet-wide", "mlp 100%", "mlp_small", None):
        body = {"spec": DIGITS, **({"name": name} if name else {})}
        assert client.post("/v1/jobs", json=body).status_code == 201

    def names(query: str) -> list[str]:
        page = client.get("/v1/jobs", params={"name": query}).json()
        return sorted(j["name"] for j in page["items"])

    assert names("resnet") == ["ResNet baseline", "resnet-wide"]
    assert names("100%") == ["mlp 100%"]  # % and _ are literal, not wildcards
    assert names("p_s") == ["mlp_small"]
    assert names("nothing") == []
    assert client.get("/v1/jobs", params={"name": ""}).status_code == 422


def test_best_metric_is_the_monitors_best_point(client: TestClient, settings: Settings) -> None:
    loss = client.post("/v1/jobs", json={"spec": DIGITS}).json()["id"]  # monitor val_loss: min
    acc_spec = {**DIGITS, "checkpointing": {"monitor": "val_accuracy"}}
    acc = client.post("/v1/jobs", json={"spec": acc_spec}).json()["id"]  # auto: max
    with session_factory(settings.resolved_database_url)() as s:
        for job_id in (loss, acc):
            attempt = repo.claim_job(s, job_id, 60.0)
            assert attempt is not None
            points = [metrics_repo.Point(n, step, step - 1, v) for step, (a, b) in
                      enumerate([(0.9, 0.5), (0.4, 0.8), (0.6, 0.7)], start=1)
                      for n, v in (("val_loss", a), ("val_accuracy", b))]  # fmt: skip
            metrics_repo.write_metrics(s, job_id, attempt, points)
        s.commit()
    listed = {j["id"]: j for j in client.get("/v1/jobs").json()["items"]}
    assert listed[loss]["best_metric"] == {"name": "val_loss", "value": 0.4, "mode": "min"}
    assert listed[acc]["best_metric"] == {"name": "val_accuracy", "value": 0.8, "mode": "max"}
