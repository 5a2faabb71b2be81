"""POST /v1/sweeps refuses a bad search space before anything is queued: every 422."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.db.session import session_factory
from api.settings import Settings
from tests.conftest import FakeQueue

DIGITS: dict[str, Any] = {
    "dataset": {"source": {"kind": "builtin", "name": "digits"}},
    "model": {"kind": "mlp", "hidden_units": [32]},
    "epochs": 2,
}
IRIS: dict[str, Any] = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 2}


def sweep(parameters: dict[str, Any], spec: dict[str, Any] | None = None, **rest: Any) -> Any:
    return {"spec": spec or DIGITS, "parameters": parameters, **rest}


def problems(client: TestClient, body: dict[str, Any]) -> dict[str, str]:
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return {e["loc"]: e["type"] for e in r.json()["errors"]}


LR = 'parameters["optimizer.lr"]'
DROPOUT = 'parameters["regularization.dropout"]'


@pytest.mark.parametrize(
    ("parameters", "extra", "loc", "kind"),
    [
        # an unknown path, and one inside a part the spec does not have
        ({"optimizer.learning_rate": {"kind": "uniform", "low": 0.1, "high": 0.2}}, {},
         'parameters["optimizer.learning_rate"]', "unknown_path"),
        ({"early_stopping.patience": {"kind": "choice", "values": [1, 2]}}, {},
         'parameters["early_stopping.patience"]', "unknown_path"),
        # a range over a field that is not a number
        ({"model.hidden_units": {"kind": "uniform", "low": 1, "high": 2}}, {},
         'parameters["model.hidden_units"].kind', "non_numeric_path"),
        ({"optimizer.kind": {"kind": "log_uniform", "low": 1, "high": 2}}, {},
         'parameters["optimizer.kind"].kind', "non_numeric_path"),
        # a float range over an integer field
        ({"dataset.batch_size": {"kind": "uniform", "low": 8, "high": 64}}, {},
         'parameters["dataset.batch_size"].kind', "integer_path"),
        # ranges leaving the field's own bounds
        ({"regularization.dropout": {"kind": "uniform", "low": 0.1, "high": 1.2}}, {},
         f"{DROPOUT}.high", "invalid_value"),
        ({"optimizer.lr": {"kind": "uniform", "low": -0.1, "high": 0.1}}, {},
         f"{LR}.low", "invalid_value"),
        ({"dataset.batch_size": {"kind": "int_uniform", "low": 0, "high": 64}}, {},
         'parameters["dataset.batch_size"].low', "invalid_value"),
        # empty and log ranges
        ({"optimizer.lr": {"kind": "uniform", "low": 0.2, "high": 0.1}}, {},
         f"{LR}.high", "empty_range"),
        ({"regularization.l2": {"kind": "log_uniform", "low": 0, "high": 0.1}}, {},
         'parameters["regularization.l2"].low', "log_range_not_positive"),
        # a choice value that is not a valid value of the field
        ({"optimizer.kind": {"kind": "choice", "values": ["adam", "lbfgs"]}}, {},
         'parameters["optimizer.kind"].values[1]', "invalid_value"),
        ({"regularization.dropout": {"kind": "grid", "values": [0.0, 0.5, 1.0]}}, {},
         f"{DROPOUT}.values[2]", "invalid_value"),
        ({"model.activation": {"kind": "choice", "values": ["relu", "relu"]}}, {},
         'parameters["model.activation"].values', "duplicate_values"),
        # the job's semantic checks on every choice: a cnn on tabular data
        ({"model.kind": {"kind": "choice", "values": ["mlp", "cnn"]}}, {"spec": IRIS},
         'parameters["model.kind"].values[1]', "model_needs_image"),
        ({"model": {"kind": "choice", "values": [{"kind": "mlp"}, {"kind": "cnn"}]}},
         {"spec": IRIS}, 'parameters["model"].values[1]', "model_needs_image"),
        # ... and on a range's extremes: the warmup of a 2-epoch run
        ({"epochs": {"kind": "int_uniform", "low": 1, "high": 4}},
         {"spec": DIGITS | {"schedule": {"kind": "constant", "warmup": {"epochs": 2}}}},
         'parameters["epochs"].low', "warmup_too_long"),
        # an objective the trials never produce
        ({"optimizer.lr": {"kind": "uniform", "low": 0.001, "high": 0.1}},
         {"objective": {"metric": "val_f1"}}, "objective.metric", "objective_not_produced"),
        ({"dataset.validation_split": {"kind": "choice", "values": [0.0, 0.2]}},
         {"objective": {"metric": "val_loss"}}, "objective.metric", "objective_not_produced"),
        # grid: max_trials above its size; a range in a grid
        ({"optimizer.lr": {"kind": "grid", "values": [0.1, 0.01]}},
         {"algorithm": {"kind": "grid"}, "max_trials": 3}, "max_trials", "max_trials_above_grid"),
        ({"optimizer.lr": {"kind": "uniform", "low": 0.01, "high": 0.1}},
         {"algorithm": {"kind": "grid"}}, f"{LR}.kind", "grid_needs_values"),
    ],
)  # fmt: skip
def test_a_bad_search_space_is_a_422_at_its_location(
    client: TestClient,
    fake_queue: FakeQueue,
    settings: Settings,
    parameters: dict[str, Any],
    extra: dict[str, Any],
    loc: str,
    kind: str,
) -> None:
    body = sweep(parameters) | extra
    if "spec" in extra:
        body["spec"] = extra["spec"]
    found = problems(client, body)
    assert found.get(loc) == kind, found
    # Nothing was queued, nothing stored.
    assert fake_queue.published == []
    assert client.get("/v1/sweeps").json()["items"] == []
    with session_factory(settings.resolved_database_url)() as s:
        from api.ledger.models import Job

        assert s.query(Job).count() == 0


@pytest.mark.parametrize(
    ("parameters", "extra", "expected"),
    [
        # an unknown path and a name no job logs: both, though the trials cannot be built
        ({"optimizer.learning_rate": {"kind": "choice", "values": [0.1]}},
         {"objective": {"metric": "val_nonsense"}},
         {'parameters["optimizer.learning_rate"]': "unknown_path",
          "objective.metric": "objective_not_produced"}),
        # a bad range, a grid over a range, max_trials, and a metric the spec does not compute
        ({"optimizer.lr": {"kind": "uniform", "low": 0.2, "high": 0.1},
          "epochs": {"kind": "grid", "values": [1, 2]}},
         {"objective": {"metric": "val_f1"}, "algorithm": {"kind": "grid"}, "max_trials": 5},
         {f"{LR}.high": "empty_range", f"{LR}.kind": "grid_needs_values",
          "max_trials": "max_trials_above_grid", "objective.metric": "objective_not_produced"}),
        # a sound space on a grid that is too small, and an objective no trial logs
        ({"optimizer.lr": {"kind": "grid", "values": [0.1, 0.01]}},
         {"objective": {"metric": "val_mae"}, "algorithm": {"kind": "grid"}, "max_trials": 3},
         {"max_trials": "max_trials_above_grid", "objective.metric": "objective_not_produced"}),
    ],
)  # fmt: skip
def test_a_bad_objective_is_in_the_same_422_as_the_parameter_problems(
    client: TestClient, parameters: dict[str, Any], extra: dict[str, Any], expected: dict[str, str]
) -> None:
    assert problems(client, sweep(parameters) | extra) == expected


def test_a_metric_parameter_leaves_the_objective_to_the_trials(client: TestClient) -> None:
    """With a parameter over spec.metrics, the base spec's metrics do not judge the
    objective: only the space's own problem is reported while the space is invalid."""
    parameters = {
        "metrics": {"kind": "choice", "values": [["f1_macro"], ["f1_macro", "auroc"]]},
        "optimizer.learning_rate": {"kind": "choice", "values": [0.1]},
    }
    found = problems(client, sweep(parameters, objective={"metric": "val_auroc"}))
    assert found == {'parameters["optimizer.learning_rate"]': "unknown_path"}


def test_an_invalid_base_spec_is_a_422_at_its_spec_location(client: TestClient) -> None:
    spec = IRIS | {"augmentation": {"horizontal_flip": True}}
    found = problems(client, sweep({"optimizer.lr": {"kind": "choice", "values": [0.1]}}, spec))
    assert found == {"spec.augmentation": "augmentation_not_image"}


def test_an_unknown_uploaded_dataset_is_a_422(client: TestClient) -> None:
    spec = {"dataset": {"source": {"kind": "uploaded", "dataset_id": "nope"}}}
    found = problems(client, sweep({"optimizer.lr": {"kind": "choice", "values": [0.1]}}, spec))
    assert found == {"spec.dataset.source.dataset_id": "unknown_dataset"}


def test_the_distribution_shape_is_checked_by_the_schema(client: TestClient) -> None:
    r = client.post("/v1/sweeps", json=sweep({"optimizer.lr": {"kind": "normal", "mu": 1}}))
    assert r.status_code == 422
    r = client.post("/v1/sweeps", json=sweep({}))
    assert r.status_code == 422
    r = client.post(
        "/v1/sweeps", json=sweep({"optimizer.lr": {"kind": "choice", "values": [0.1]}}) | {
            "max_concurrent_trials": 0}
    )  # fmt: skip
    assert r.status_code == 422


def test_concurrency_above_the_running_quota_is_allowed_with_a_warning(
    client: TestClient, settings: Settings, fake_queue: FakeQueue
) -> None:
    from api.teams.repository import DEFAULT_TEAM, get_or_create_team

    with session_factory(settings.resolved_database_url)() as s:
        get_or_create_team(s, DEFAULT_TEAM).max_running_jobs = 1
        s.commit()
    body = sweep(
        {"optimizer.lr": {"kind": "log_uniform", "low": 1e-4, "high": 0.1}},
        max_trials=4,
        max_concurrent_trials=3,
        execution={"pack": "off"},  # packing would queue all 4 (max_pack per slot)
    )
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    warnings = r.json()["warnings"]
    assert [w["loc"] for w in warnings] == ["max_concurrent_trials"]
    assert "quota (1)" in warnings[0]["msg"]
    assert len(fake_queue.published) == 3  # queued; the scheduler holds them to the quota


def test_a_malformed_distribution_is_named_by_its_parameter(client: TestClient) -> None:
    body = sweep({"optimizer.lr": {"kind": "uniform", "low": "small", "high": 0.1}})
    assert problems(client, body) == {'parameters["optimizer.lr"].low': "float_parsing"}
    body = sweep({"optimizer.lr": {"kind": "uniform", "high": 0.1}})
    assert problems(client, body) == {'parameters["optimizer.lr"].low': "missing"}


def test_a_kind_choice_resets_the_part_to_that_kinds_defaults(
    client: TestClient, fake_queue: FakeQueue
) -> None:
    body = sweep({"model.kind": {"kind": "choice", "values": ["mlp", "cnn"]}}, max_trials=2)
    body["algorithm"] = {"kind": "grid"}
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    trials = client.get(f"/v1/sweeps/{r.json()['id']}/trials").json()["items"]
    specs = [client.get(f"/v1/jobs/{t['job_id']}").json()["spec"]["model"] for t in trials]
    assert sorted(m["kind"] for m in specs) == ["cnn", "mlp"]
    cnn = next(m for m in specs if m["kind"] == "cnn")
    assert "hidden_units" not in cnn and cnn["channels"] == [32, 64]


def test_a_sweep_searches_column_encodings(client: TestClient, fake_queue: FakeQueue) -> None:
    from tests.api.test_dataset_columns import mixed_csv
    from tests.api.test_datasets import uploaded

    ds = uploaded(client, mixed_csv(), "csv", impute="mean")
    spec = {"dataset": {"source": {"kind": "uploaded", "dataset_id": ds["id"]}}, "epochs": 1}
    path = "dataset.columns.city.encoding"
    body = sweep({path: {"kind": "choice", "values": ["one_hot", "ordinal", "embedding"]}}, spec,
                 max_trials=3, max_concurrent_trials=3, algorithm={"kind": "grid"})  # fmt: skip
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    trials = client.get(f"/v1/sweeps/{r.json()['id']}/trials").json()["items"]
    specs = [client.get(f"/v1/jobs/{t['job_id']}").json()["spec"]["dataset"] for t in trials]
    assert sorted(s["columns"]["city"]["encoding"] for s in specs) == [
        "embedding", "one_hot", "ordinal"
    ]  # fmt: skip
    bad = sweep({path: {"kind": "choice", "values": ["one_hot", "sparkles"]}}, spec)
    found = problems(client, bad)
    assert found == {f'parameters["{path}"].values[1]': "invalid_value"}


def test_devices_no_worker_may_give_are_refused_before_any_trial(client: TestClient) -> None:
    # As a job's submit refuses them (issue 27): the base spec's, and each value a
    # parameter gives resources.devices.
    big = {**DIGITS, "resources": {"devices": 16}}
    lrs = {"optimizer.lr": {"kind": "grid", "values": [0.1, 0.01]}}
    assert problems(client, sweep(lrs, big)) == {"spec.resources.devices": "too_many_devices"}
    devices = {"resources.devices": {"kind": "grid", "values": [1, 16]}}
    assert problems(client, sweep(devices)) == {
        'parameters["resources.devices"].values[1]': "too_many_devices"
    }
    fits = {"resources.devices": {"kind": "grid", "values": [1, 2]}}
    r = client.post("/v1/sweeps", json=sweep(fits))
    assert r.status_code == 201, r.text
