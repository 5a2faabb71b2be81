"""spec.metrics, monitors of extra metrics and class weights: the 422s that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ml.checks import builtin_info, check_spec, monitorable_metrics
from ml.monitor import resolve_mode
from ml.spec import JobSpec, LossSpec, loss_kind


def spec_for(name: str, **body: Any) -> JobSpec:
    return JobSpec.model_validate(
        {"dataset": {"source": {"kind": "builtin", "name": name}}, **body}
    )


def problems(spec: JobSpec) -> dict[tuple[str | int, ...], str]:
    assert spec.dataset.source.kind == "builtin"
    return {p.loc: p.type for p in check_spec(spec, builtin_info(spec.dataset.source))}


def test_requested_metrics_become_monitorable_with_their_val_twins() -> None:
    spec = spec_for("iris", metrics=["f1_macro", "auroc"])
    produced = monitorable_metrics(spec, builtin_info(spec.dataset.source))
    assert {"f1_macro", "auroc", "val_f1_macro", "val_auroc"} <= set(produced)
    assert problems(spec) == {}


@pytest.mark.parametrize(
    ("name", "metrics", "loc"),
    [
        ("iris", ["f1_macro", "r2"], ("metrics", 1)),
        ("diabetes", ["auroc"], ("metrics", 0)),
        ("diabetes", ["mae", "top_2_accuracy"], ("metrics", 1)),
        ("iris", ["top_3_accuracy"], ("metrics", 0)),  # k must be below the 3 classes
    ],
)
def test_a_metric_that_does_not_fit_the_task_names_its_index(
    name: str, metrics: list[str], loc: tuple[str | int, ...]
) -> None:
    assert problems(spec_for(name, metrics=metrics)) == {loc: "metric_task_mismatch"}


@pytest.mark.parametrize("bad", ["f1", "f1_binary", "top_0_accuracy", "accuracy", "MAE"])
def test_unknown_metric_names_are_rejected_by_the_schema(bad: str) -> None:
    with pytest.raises(ValidationError) as err:
        spec_for("iris", metrics=[bad])
    assert err.value.errors()[0]["loc"] == ("metrics", 0)


def test_a_metric_named_twice_is_rejected() -> None:
    with pytest.raises(ValidationError, match="f1_macro more than once"):
        spec_for("iris", metrics=["f1_macro", "auroc", "f1_macro"])


@pytest.mark.parametrize(
    ("body", "loc", "code"),
    [
        ({"early_stopping": {"monitor": "val_f1_macro"}}, ("early_stopping", "monitor"),
         "monitor_not_in_metrics"),
        ({"checkpointing": {"monitor": "auroc"}}, ("checkpointing", "monitor"),
         "monitor_not_in_metrics"),
        ({"schedule": {"kind": "reduce_on_plateau", "monitor": "val_mae"}},
         ("schedule", "monitor"), "monitor_not_in_metrics"),
        ({"early_stopping": {"monitor": "val_f1"}}, ("early_stopping", "monitor"),
         "monitor_unknown"),
    ],
)  # fmt: skip
def test_monitoring_a_metric_the_job_does_not_log_is_a_problem_at_the_field(
    body: dict[str, Any], loc: tuple[str, ...], code: str
) -> None:
    assert problems(spec_for("iris", **body)) == {loc: code}


def test_monitoring_requested_metrics_is_fine_and_resolves_their_direction() -> None:
    spec = spec_for(
        "diabetes",
        metrics=["mae", "r2"],
        early_stopping={"monitor": "val_mae"},
        checkpointing={"monitor": "val_r2"},
        schedule={"kind": "reduce_on_plateau", "monitor": "rmse"} | {},
    )
    assert problems(spec) == {("schedule", "monitor"): "monitor_not_in_metrics"}
    assert resolve_mode("val_mae", "auto") == "min" and resolve_mode("rmse", "auto") == "min"
    assert resolve_mode("val_r2", "auto") == "max" and resolve_mode("f1_weighted", "auto") == "max"
    assert resolve_mode("val_auroc", "auto") == "max"
    assert resolve_mode("val_balanced_accuracy", "auto") == "max"


def test_a_metric_monitored_without_a_validation_split_says_so() -> None:
    spec = spec_for(
        "iris",
        dataset={"source": {"kind": "builtin", "name": "iris"}, "validation_split": 0},
        metrics=["f1_macro"],
        early_stopping={"monitor": "val_f1_macro"},
        checkpointing={"monitor": "f1_macro"},
    )
    assert problems(spec) == {("early_stopping", "monitor"): "monitor_needs_validation"}


def test_loss_takes_a_name_or_an_object() -> None:
    assert loss_kind(spec_for("iris", loss="cross_entropy").loss) == "cross_entropy"
    spec = spec_for("iris", loss={"class_weight": "balanced"})
    assert isinstance(spec.loss, LossSpec) and loss_kind(spec.loss) == "auto"
    spec = spec_for("iris", loss={"kind": "cross_entropy", "class_weight": {"0": 2, "2": 0.5}})
    assert isinstance(spec.loss, LossSpec) and spec.loss.class_weight == {"0": 2.0, "2": 0.5}


@pytest.mark.parametrize(
    ("name", "loss", "loc", "code"),
    [
        ("diabetes", {"class_weight": "balanced"}, ("loss", "class_weight"),
         "class_weight_regression"),
        ("iris", {"class_weight": {"0": 1, "3": 2}}, ("loss", "class_weight", "3"),
         "class_weight_unknown_class"),
        ("iris", {"kind": "mse", "class_weight": "balanced"}, ("loss",), "loss_task_mismatch"),
    ],
)  # fmt: skip
def test_class_weight_problems_name_the_field(
    name: str, loss: dict[str, Any], loc: tuple[str, ...], code: str
) -> None:
    assert problems(spec_for(name, loss=loss)) == {loc: code}


@pytest.mark.parametrize("weights", [{"a": 1}, {"-1": 1}, {"0": -1}, "inverse"])
def test_malformed_class_weights_are_schema_errors(weights: object) -> None:
    with pytest.raises(ValidationError):
        spec_for("iris", loss={"class_weight": weights})


def test_warm_start_checks_that_need_no_database() -> None:
    warm = {"job_id": "j", "freeze": ["1", "4"], "reset": ["7", "4"], "optimizer_state": True}
    assert problems(spec_for("iris", warm_start=warm)) == {
        ("warm_start", "optimizer_state"): "warm_start_optimizer_state",
        ("warm_start", "reset", 1): "warm_start_freeze_and_reset",
    }
    assert problems(spec_for("iris", warm_start={"job_id": "j", "checkpoint": 3})) == {}
    assert problems(spec_for("iris", warm_start={"job_id": "j", "optimizer_state": True})) == {}


def test_warm_start_layers_are_plan_ids_and_an_unknown_one_is_a_problem_at_its_index() -> None:
    graph = {"kind": "graph", "layers": [{"op": "dense", "units": 8, "id": "stem"}]}
    warm = {"job_id": "j", "freeze": ["stem", "layers.0", "nope"], "reset": ["head", "vit"]}
    assert problems(spec_for("iris", model=graph, warm_start=warm)) == {
        ("warm_start", "freeze", 2): "warm_start_unknown_layer",
        ("warm_start", "reset", 1): "warm_start_unknown_layer",
    }
    # A shorthand expands to a graph: its layers.<i> and head exist; digits are module names.
    shorthand = {"job_id": "j", "freeze": ["layers.1", "1"], "reset": ["head"]}
    assert problems(spec_for("iris", warm_start=shorthand)) == {}
