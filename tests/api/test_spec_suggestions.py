"""The API's face of ml.spec_base: "did you mean" in a 422, no unused synthetic options."""

from __future__ import annotations

from fastapi.testclient import TestClient

DIGITS = {"source": {"kind": "builtin", "name": "digits"}}


def test_the_api_says_did_you_mean_and_resolves_without_unused_options(client: TestClient) -> None:
    r = client.post("/v1/specs/validate", json={"spec": {"dataset": DIGITS, "epoch": 3}})
    assert r.status_code == 422, r.text
    problems = {e["loc"]: e["msg"] for e in r.json()["errors"]}
    assert problems["spec.epoch"].endswith("did you mean `epochs`?"), problems
    r = client.post("/v1/specs/validate", json={"spec": {"dataset": DIGITS}})
    assert r.status_code == 200, r.text
    assert "synthetic" not in r.json()["spec"]["dataset"]["source"]
