"""ml.checks: the hard-coded dataset facts against scikit-learn, and every semantic check."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from sklearn import datasets
from sklearn.model_selection import train_test_split

from ml.checks import (
    DatasetInfo,
    SpecProblem,
    builtin_info,
    check_spec,
    monitorable_metrics,
    split_sizes,
)
from ml.spec import BuiltinSource, JobSpec

DIGITS = {"kind": "builtin", "name": "digits"}
IRIS = {"kind": "builtin", "name": "iris"}
DIABETES = {"kind": "builtin", "name": "diabetes"}
TEXT = DatasetInfo("classification", "text", 500, 0, None, 2)
UPLOADED = {"kind": "uploaded", "dataset_id": "ds_1"}


def spec(source: dict[str, Any], **parts: Any) -> JobSpec:
    dataset = {"source": source, **parts.pop("dataset", {})}
    return JobSpec.model_validate({"dataset": dataset, **parts})


def problems(
    s: JobSpec, info: DatasetInfo | None = None
) -> list[tuple[tuple[str | int, ...], str]]:
    assert isinstance(s.dataset.source, BuiltinSource) or info is not None
    found = check_spec(s, info or builtin_info(s.dataset.source))  # type: ignore[arg-type]
    for p in found:
        assert isinstance(p, SpecProblem) and p.msg  # every problem says what to do
    return [(p.loc, p.type) for p in found]


# --------------------------------------------------------------------------- dataset facts

LOADERS = {
    "digits": datasets.load_digits,
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "diabetes": datasets.load_diabetes,
}


@pytest.mark.parametrize("name", list(LOADERS))
def test_builtin_facts_match_scikit_learn(name):
    data = LOADERS[name]()
    info = builtin_info(BuiltinSource(name=name))
    assert (info.n_samples, info.n_features) == data.data.shape
    if name == "diabetes":
        assert (info.task, info.n_classes) == ("regression", 0)
    else:
        assert info.task == "classification"
        assert info.n_classes == len(np.unique(data.target))
    if name == "digits":
        assert (info.modality, info.image_shape) == ("image", (1, *data.images.shape[1:]))
    else:
        assert (info.modality, info.image_shape) == ("tabular", None)


def test_synthetic_info_follows_its_options():
    tab = builtin_info(BuiltinSource(name="synthetic"))
    assert tab == DatasetInfo("classification", "tabular", 1024, 20, None, 2)
    src = BuiltinSource.model_validate(
        {
            "name": "synthetic",
            "synthetic": {"n_samples": 64, "n_classes": 0, "image_shape": [3, 4, 5]},
        }
    )
    assert builtin_info(src) == DatasetInfo("regression", "image", 64, 60, (3, 4, 5), 0)


@pytest.mark.parametrize(
    ("n", "split"),
    list(itertools.product([8, 10, 100, 150, 1797], [0.07, 0.1, 0.2, 0.3, 0.5, 0.9])),
)
def test_split_sizes_match_train_test_split(n, split):
    n_train, n_val = split_sizes(n, split)
    if n_train == 0:  # scikit-learn refuses; check_spec reports split_empty_train
        with pytest.raises(ValueError, match="train set will be empty"):
            train_test_split(np.arange(n), test_size=split)
        return
    train, val = train_test_split(np.arange(n), test_size=split, random_state=0)
    assert (n_train, n_val) == (len(train), len(val))


def test_split_sizes_zero_means_no_validation():
    assert split_sizes(150, 0.0) == (150, 0)


def test_monitorable_metrics_depend_on_task_and_split():
    assert monitorable_metrics(spec(IRIS), builtin_info(BuiltinSource(name="iris"))) == [
        "loss", "accuracy", "val_loss", "val_accuracy"]  # fmt: skip
    no_val = spec(DIABETES, dataset={"validation_split": 0})
    assert monitorable_metrics(no_val, builtin_info(BuiltinSource(name="diabetes"))) == ["loss"]


# --------------------------------------------------------------------------- valid specs


@pytest.mark.parametrize("name", [*LOADERS, "synthetic"])
def test_default_spec_on_every_builtin_is_fine(name):
    assert problems(spec({"kind": "builtin", "name": name})) == []


def test_valid_combinations_raise_nothing():
    ok = [
        spec(DIGITS, model={"kind": "cnn"}, augmentation={"rotation_range": 10}),
        spec(DIGITS, model={"kind": "mlp"}),  # an image flattened into an MLP is fine
        spec(IRIS, dataset={"batch_size": 4096}),  # batch larger than the training set (Keras)
        spec(IRIS, resources={"device": "cuda"}),  # checked when the job runs
        spec(IRIS, schedule={"kind": "cosine_restarts", "t_0": 50}),
        spec(IRIS, schedule={"kind": "one_cycle"}, epochs=1),
        spec(IRIS, dataset={"validation_split": 0}, checkpointing={"keep_best": 0}),
        spec(IRIS, dataset={"validation_split": 0}, checkpointing={"monitor": "accuracy"}),
        spec(IRIS, schedule={"kind": "constant", "warmup": {"epochs": 10}}, epochs=10),
        spec(IRIS, schedule={"kind": "multistep", "milestones": [9]}, epochs=10),
        spec(IRIS, early_stopping={"monitor": "val_accuracy", "start_from_epoch": 9}, epochs=10),
        spec(DIABETES, loss="huber", checkpointing={"monitor": "loss"}),
    ]
    for s in ok:
        assert problems(s) == [], s
    text = spec(UPLOADED, model={"kind": "text"}, regularization={"label_smoothing": 0.1})
    assert problems(text, TEXT) == []


# --------------------------------------------------------------------------- each problem


@pytest.mark.parametrize(
    ("s", "info", "expected"),
    [
        (spec(IRIS, augmentation={"horizontal_flip": True}), None,
         [(("augmentation",), "augmentation_not_image")]),
        (spec(IRIS, model={"kind": "cnn"}), None, [(("model", "kind"), "model_needs_image")]),
        (spec(UPLOADED, model={"kind": "cnn"}), TEXT, [(("model", "kind"), "model_needs_image")]),
        (spec(DIGITS, model={"kind": "text"}), None, [(("model", "kind"), "model_needs_text")]),
        (spec(IRIS, model={"kind": "text"}), None, [(("model", "kind"), "model_needs_text")]),
        (spec(UPLOADED), TEXT, [(("model", "kind"), "model_not_for_text")]),
        (spec(DIABETES, loss="cross_entropy"), None, [(("loss",), "loss_task_mismatch")]),
        (spec(IRIS, loss="mse"), None, [(("loss",), "loss_task_mismatch")]),
        (spec(IRIS, loss="mae"), None, [(("loss",), "loss_task_mismatch")]),
        (spec(DIABETES, regularization={"label_smoothing": 0.1}), None,
         [(("regularization", "label_smoothing"), "label_smoothing_regression")]),
        (spec(IRIS, early_stopping={"start_from_epoch": 10}, epochs=10), None,
         [(("early_stopping", "start_from_epoch"), "start_after_run")]),
        (spec(IRIS, schedule={"kind": "constant", "warmup": {"epochs": 11}}, epochs=10), None,
         [(("schedule", "warmup"), "warmup_too_long")]),
        # iris: 120 training samples, batch 32 -> 4 steps per epoch, 40 in the run
        (spec(IRIS, schedule={"kind": "cosine", "warmup": {"steps": 41}}, epochs=10), None,
         [(("schedule", "warmup"), "warmup_too_long")]),
        (spec(IRIS, schedule={"kind": "multistep", "milestones": [3, 10, 12]}, epochs=10), None,
         [(("schedule", "milestones", 1), "milestone_after_run"),
          (("schedule", "milestones", 2), "milestone_after_run")]),
        (spec(IRIS, schedule={"kind": "reduce_on_plateau", "min_lr": 0.01}), None,
         [(("schedule", "min_lr"), "min_lr_above_lr")]),
        (spec(IRIS, dataset={"validation_split": 0.01}), None,
         [(("dataset", "validation_split"), "split_too_small_for_stratify")]),
    ],
)  # fmt: skip
def test_each_problem_is_reported_where_it_is(s, info, expected):
    assert problems(s, info) == expected


@pytest.mark.parametrize(
    ("part", "loc"),
    [
        ({"early_stopping": {"monitor": "{m}"}}, ("early_stopping", "monitor")),
        ({"checkpointing": {"monitor": "{m}"}}, ("checkpointing", "monitor")),
        ({"schedule": {"kind": "reduce_on_plateau", "monitor": "{m}"},
          "checkpointing": {"keep_best": 0}}, ("schedule", "monitor")),
    ],
)  # fmt: skip
@pytest.mark.parametrize(
    ("source", "split", "monitor", "types"),
    [
        (IRIS, 0.2, "val_f1", ["monitor_unknown"]),
        (IRIS, 0.2, "lr", ["monitor_unknown"]),
        (IRIS, 0.0, "val_loss", ["monitor_needs_validation"]),
        (IRIS, 0.0, "val_accuracy", ["monitor_needs_validation"]),
        (DIABETES, 0.2, "accuracy", ["monitor_needs_classification"]),
        (
            DIABETES,
            0.0,
            "val_accuracy",
            ["monitor_needs_classification", "monitor_needs_validation"],
        ),
    ],
)
def test_monitors_the_job_never_produces(part, loc, source, split, monitor, types):
    parts = {k: {f: (monitor if x == "{m}" else x) for f, x in v.items()} for k, v in part.items()}
    if "checkpointing" not in parts:
        parts["checkpointing"] = {"monitor": "loss"}  # keep the default out of the way
    s = spec(source, dataset={"validation_split": split}, **parts)
    assert problems(s) == [(loc, t) for t in types]


def test_default_checkpoint_monitor_needs_validation_unless_keep_best_is_zero():
    s = spec(IRIS, dataset={"validation_split": 0})
    assert problems(s) == [(("checkpointing", "monitor"), "monitor_needs_validation")]
    assert "keep_best" in check_spec(s, builtin_info(BuiltinSource(name="iris")))[0].msg


def test_all_problems_are_reported_at_once():
    s = spec(
        IRIS,
        dataset={"validation_split": 0},
        augmentation={"zoom_range": 0.1},
        model={"kind": "cnn"},
        loss="mse",
        early_stopping={"monitor": "val_loss", "start_from_epoch": 5},
        epochs=5,
        schedule={"kind": "one_cycle", "warmup": {"epochs": 6}},
    )
    assert sorted(t for _, t in problems(s)) == sorted([
        "augmentation_not_image", "model_needs_image", "loss_task_mismatch",
        "monitor_needs_validation", "monitor_needs_validation", "start_after_run",
        "warmup_too_long",
    ])  # fmt: skip


def test_bad_data_shapes_and_empty_training_split():
    tiny = spec(UPLOADED, dataset={"validation_split": 0.9}, schedule={"kind": "one_cycle"})
    info = DatasetInfo("regression", "tabular", 1, 3, None, 0)
    assert problems(tiny, info) == [
        (("dataset", "validation_split"), "split_empty_train"),
        (("schedule", "kind"), "schedule_needs_steps"),
    ]
    synthetic = {"kind": "builtin", "name": "synthetic",
                 "synthetic": {"n_classes": 1, "image_shape": [1, 0, 4]}}  # fmt: skip
    assert problems(spec(synthetic, checkpointing={"monitor": "loss"})) == [
        (("dataset", "source", "synthetic", "image_shape"), "invalid_image_shape"),
        (("dataset", "source", "synthetic", "n_classes"), "too_few_classes"),
    ]


def test_batch_norm_with_a_last_batch_of_one_sample_is_refused() -> None:
    from ml.checks import builtin_info, check_spec, split_sizes
    from ml.spec import JobSpec

    base = {
        "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 119},
        "model": {"kind": "mlp", "normalization": "batch"},
    }
    spec = JobSpec.model_validate(base)
    info = builtin_info(spec.dataset.source)  # type: ignore[arg-type]
    n_train, _ = split_sizes(info.n_samples, spec.dataset.validation_split)
    assert n_train % 119 == 1
    codes = {p.type: p.loc for p in check_spec(spec, info)}
    assert codes["batch_norm_single_sample_batch"] == ("dataset", "batch_size")
    fine = JobSpec.model_validate({**base, "model": {"kind": "mlp", "normalization": "layer"}})
    assert "batch_norm_single_sample_batch" not in {p.type for p in check_spec(fine, info)}


def test_transformer_heads_must_divide_the_embedding() -> None:
    from ml.checks import DatasetInfo, check_spec
    from ml.spec import JobSpec

    info = DatasetInfo(
        task="classification",
        modality="text",
        n_samples=100,
        n_features=0,
        image_shape=None,
        n_classes=2,
    )
    spec = JobSpec.model_validate(
        {
            "dataset": {"source": {"kind": "uploaded", "dataset_id": "x"}},
            "model": {
                "kind": "text",
                "encoder": "transformer",
                "embedding_dim": 30,
                "num_heads": 4,
            },
        }
    )
    assert [p.loc for p in check_spec(spec, info)] == [("model", "num_heads")]


def test_sgd_nesterov_without_momentum_is_refused_at_validation() -> None:
    # torch.optim.SGD refuses it at build time; validation says so first (issue 28, 1).
    from pydantic import ValidationError

    from ml.spec import JobSpec

    base = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}}
    with pytest.raises(ValidationError, match="nesterov needs momentum > 0"):
        JobSpec.model_validate({**base, "optimizer": {"kind": "sgd", "nesterov": True}})
    ok = {"kind": "sgd", "nesterov": True, "momentum": 0.9}
    assert JobSpec.model_validate({**base, "optimizer": ok}).optimizer.kind == "sgd"


def test_batch_norm_with_batch_size_one_is_refused() -> None:
    # Found by tests/ml/test_spec_builds.py: every batch has one sample, not only the last.
    from ml.checks import builtin_info, check_spec
    from ml.spec import JobSpec

    for model in ({"kind": "mlp", "normalization": "batch"}, {"kind": "cnn"}):
        name = "digits" if model["kind"] == "cnn" else "iris"
        base = {"dataset": {"source": {"kind": "builtin", "name": name}, "batch_size": 1}}
        spec = JobSpec.model_validate({**base, "model": model})
        info = builtin_info(spec.dataset.source)  # type: ignore[arg-type]
        codes = {p.type: p.loc for p in check_spec(spec, info)}
        assert codes["batch_norm_single_sample_batch"] == ("dataset", "batch_size")


def test_one_cycle_divisors_below_one_are_refused() -> None:
    # Found by tests/ml/test_spec_builds.py: div_factor 5e-128 made the first lr overflow.
    from pydantic import ValidationError

    from ml.spec import JobSpec

    base = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}}
    for field in ("div_factor", "final_div_factor"):
        with pytest.raises(ValidationError, match=field):
            JobSpec.model_validate({**base, "schedule": {"kind": "one_cycle", field: 0.5}})


def test_a_plan_beyond_the_maximum_of_total_steps_is_refused_with_the_arithmetic() -> None:
    # Issue 28, 7: 100,000 epochs x 8,000,000 steps validated (800 billion steps).
    from ml.checks import MAX_TOTAL_STEPS, builtin_info, check_spec
    from ml.spec import JobSpec

    source = {"kind": "builtin", "name": "synthetic",
              "synthetic": {"n_samples": 10_000_000, "n_features": 1}}  # fmt: skip
    dataset = {"source": source, "batch_size": 1, "validation_split": 0.2}
    spec = JobSpec.model_validate({"dataset": dataset, "epochs": 100_000})
    info = builtin_info(spec.dataset.source)  # type: ignore[arg-type]
    (problem,) = [p for p in check_spec(spec, info) if p.type == "too_many_steps"]
    assert problem.loc == ("epochs",)
    assert "100000 epochs x 8000000 steps per epoch" in problem.msg
    assert "= 800000000000 optimizer steps" in problem.msg and str(MAX_TOTAL_STEPS) in problem.msg
    at_limit = spec.model_copy(update={"epochs": MAX_TOTAL_STEPS // 8_000_000})
    assert "too_many_steps" not in {p.type for p in check_spec(at_limit, info)}


def test_batch_size_must_divide_among_the_devices():
    """dataset.batch_size is the global batch: devices must divide it (issue 27), a 422
    naming both numbers; 1 device takes any batch."""
    uneven = spec(IRIS, dataset={"batch_size": 30}, resources={"devices": 4})
    found = check_spec(uneven, builtin_info(uneven.dataset.source))  # type: ignore[arg-type]
    assert [(p.loc, p.type) for p in found] == [(("dataset", "batch_size"), "batch_not_divisible")]
    assert "batch_size 30" in found[0].msg and "devices 4" in found[0].msg
    assert "28 or 32" in found[0].msg
    for devices, batch in ((2, 30), (3, 30), (1, 7)):
        fine = spec(IRIS, dataset={"batch_size": batch}, resources={"devices": devices})
        assert check_spec(fine, builtin_info(fine.dataset.source)) == []  # type: ignore[arg-type]


def test_per_replica_batch_norm_needs_two_rows_on_every_device():
    """devices 2 without sync_batch_norm: each device normalizes its slice; a slice of one
    row (batch 2, or the last batch's remainder) cannot train; sync_batch_norm can."""
    mlp = {"kind": "mlp", "normalization": "batch"}
    # iris: 120 training rows; batch 2 -> slices of 1; batch 34 -> last batch 18, slices 17 + 1
    for batch in (2, 34):
        per_replica = spec(IRIS, dataset={"batch_size": batch}, model=mlp,
                           resources={"devices": 2})  # fmt: skip
        found = check_spec(per_replica, builtin_info(per_replica.dataset.source))  # type: ignore[arg-type]
        assert [p.type for p in found] == ["batch_norm_single_sample_batch"], batch
        assert "devices 2" in found[0].msg and "sync_batch_norm" in found[0].msg
        synced = spec(IRIS, dataset={"batch_size": batch}, model=mlp,
                      resources={"devices": 2, "sync_batch_norm": True})  # fmt: skip
        assert check_spec(synced, builtin_info(synced.dataset.source)) == []  # type: ignore[arg-type]
