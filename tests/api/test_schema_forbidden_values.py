"""Values the OpenAPI document forbids are refused, at their location (issue 28, finding 4).

The audit's four: a non-boolean `resources.compile`, `limit=%0C9`, an integer
`expires_at`, odd `name` values on the metrics route.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

IRIS = {"source": {"kind": "builtin", "name": "iris"}}


@pytest.mark.parametrize("value", [1, 0, "yes", "true", "on"])
def test_a_non_boolean_spec_flag_is_a_422_at_the_field(client: TestClient, value: object) -> None:
    spec = {"dataset": IRIS, "resources": {"compile": value}}
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["errors"]] == ["spec.resources.compile"]
    both = {"dataset": {**IRIS, "shuffle": "no"}, "resources": {"compile": True}, "epochs": 0}
    locs = {e["loc"] for e in client.post("/v1/jobs", json={"spec": both}).json()["errors"]}
    assert locs == {"spec.dataset.shuffle", "spec.epochs"}  # every problem, still listed


def test_true_and_false_are_still_flags(client: TestClient) -> None:
    spec = {"dataset": {**IRIS, "shuffle": False}, "resources": {"compile": False}}
    assert client.post("/v1/jobs", json={"spec": spec}).status_code == 201


@pytest.mark.parametrize("query", ["limit=%0C9", "limit=9%20", "limit=%209", "limit=1_0"])
def test_an_integer_query_parameter_must_be_digits(client: TestClient, query: str) -> None:
    for path in ("/v1/jobs", "/v1/datasets", "/v1/admin/audit"):
        r = client.get(f"{path}?{query}")
        assert r.status_code == 422, (path, query, r.text)
        assert [e["loc"] for e in r.json()["errors"]] == ["query.limit"]
    assert client.get("/v1/jobs?limit=9").status_code == 200
    assert client.get("/v1/jobs?limit=-1").status_code == 422  # still its bounds


def test_a_strangers_bad_query_is_still_a_401(client: TestClient) -> None:
    r = client.get("/v1/jobs?limit=%0C9", headers={"Authorization": "Bearer tf_x_y"})
    assert r.status_code == 401


@pytest.mark.parametrize("value", [2_000_000_000, 1.5, True])
def test_expires_at_must_be_a_date_time_string(client: TestClient, value: object) -> None:
    r = client.post("/v1/admin/keys", json={"team": "default", "expires_at": value})
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["errors"]] == ["expires_at"]
    ok = {"team": "default", "expires_at": "2099-01-01T00:00:00Z"}
    assert client.post("/v1/admin/keys", json=ok).status_code == 201


@pytest.mark.parametrize("name", ["%00", "", "a%0Ab", "x" * 65])
def test_odd_metric_names_are_a_422(client: TestClient, name: str) -> None:
    job = client.post("/v1/jobs", json={"spec": {"dataset": IRIS}}).json()["id"]
    r = client.get(f"/v1/jobs/{job}/metrics?name={name}")
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"].startswith("query.name")
    for fine in ("val_loss", "f1_macro", "top_5_accuracy", "ünïcode"):
        assert client.get(f"/v1/jobs/{job}/metrics", params={"name": fine}).status_code == 200


def test_an_app_reuses_the_rules_of_an_app_with_the_same_operations_only(
    client: TestClient,
) -> None:
    """The rules are read from the document once per set of operations in a process: an
    app with the same operations gets the rules its own document gives; one with an extra
    integer query parameter gets its own."""
    from fastapi import FastAPI

    from api.query_guard import routes_of, rules_for

    app = client.app
    assert isinstance(app, FastAPI)
    assert rules_for(app) == routes_of(app.openapi())
    assert any(r.integers == {"limit"} for r in rules_for(app))
    other = FastAPI()

    @other.get("/v1/jobs")
    def listing(limit: int = 1, extra: int = 0) -> dict[str, int]:
        return {"limit": limit, "extra": extra}

    (route,) = rules_for(other)
    assert route.integers == {"limit", "extra"} and route.method == "GET"
    assert client.get("/v1/jobs?extra=%0C9").status_code == 200  # not this app's parameter
