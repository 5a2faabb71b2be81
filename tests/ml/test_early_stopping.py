"""ml.early_stopping and ml.monitor against the real Keras 3 callbacks (torch backend).

The Keras ``EarlyStopping`` callback runs on a stand-in model whose "weights"
are the epoch number, so the epoch Keras would restore is visible. Metric
values are multiples of 1/64: Keras compares in float32, we in float64, and
on that grid both are exact (ties at exactly min_delta included).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
from typing import Any

import numpy as np
import pytest

from ml.early_stopping import EarlyStopping
from ml.monitor import is_improvement, resolve_mode
from ml.spec import EarlyStoppingSpec

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere
import keras

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


class FakeModel:
    """What EarlyStopping touches on a Keras model: weights and stop_training."""

    def __init__(self) -> None:
        self.epoch = 0
        self.stop_training = False

    def get_weights(self) -> list[Any]:
        return [np.array(self.epoch)]


def metric_walk(rng: random.Random, n: int) -> list[float]:
    k, out = 256, []
    for _ in range(n):
        k += rng.choice([-6, -3, -1, 0, 0, 0, 1, 2, 3, 5])
        out.append(k / 64)
    return out


def run_both(spec: EarlyStoppingSpec, metrics: list[dict[str, float]]) -> None:
    ours = EarlyStopping(spec)
    cb = keras.callbacks.EarlyStopping(
        monitor=spec.monitor,
        mode=ours.mode,  # the stand-in model has no metric objects for "auto"
        patience=spec.patience,
        min_delta=spec.min_delta,
        baseline=spec.baseline,
        restore_best_weights=spec.restore_best_weights,
        start_from_epoch=spec.start_from_epoch,
    )
    model = FakeModel()
    cb.set_model(model)
    cb.on_train_begin()
    snapshot: int | None = None  # what the engine would hold as best weights
    for epoch, logs in enumerate(metrics):
        model.epoch = epoch
        cb.on_epoch_end(epoch, dict(logs))
        stop = ours.on_epoch_end(epoch, logs)
        if ours.is_new_best_this_epoch():
            snapshot = epoch
        assert stop == model.stop_training, epoch
        assert ours.wait == cb.wait, epoch
        assert ours.best == cb.best or (math.isnan(ours.best or 0) and math.isnan(cb.best)), epoch
        assert (ours.best_epoch or 0) == cb.best_epoch, epoch
        if stop:
            break
    assert (ours.stopped_epoch or 0) == cb.stopped_epoch
    if spec.restore_best_weights:
        assert ours.should_restore == (cb.best_weights is not None)
        if cb.best_weights is not None:
            assert snapshot == int(cb.best_weights[0])
    else:
        assert not ours.should_restore


GRID = list(
    itertools.product(
        [0, 1, 3],  # patience
        [0.0, 1 / 16],  # min_delta
        [None, 3.5, 4.5],  # baseline
        [0, 3],  # start_from_epoch
        [True, False],  # restore_best_weights
        ["min", "max"],  # mode
    )
)


@pytest.mark.parametrize(("patience", "min_delta", "baseline", "start", "restore", "mode"), GRID)
def test_matches_keras_early_stopping(patience, min_delta, baseline, start, restore, mode):
    spec = EarlyStoppingSpec(
        monitor="val_loss",
        mode=mode,
        patience=patience,
        min_delta=min_delta,
        baseline=baseline,
        restore_best_weights=restore,
        start_from_epoch=start,
    )
    for seed in range(5):
        values = metric_walk(random.Random(seed), 30)
        run_both(spec, [{"val_loss": v, "loss": 0.0} for v in values])


def test_matches_keras_with_missing_and_nan_values():
    spec = EarlyStoppingSpec(monitor="val_loss", mode="min", patience=2, restore_best_weights=True)
    values = [None, 2.0, None, float("nan"), 2.5, 1.5, 1.5, 1.5]
    metrics = [{"loss": 1.0} if v is None else {"val_loss": v} for v in values]
    run_both(spec, metrics)
    run_both(spec, [{"val_loss": float("nan")}, *metrics])  # a NaN first value becomes the best


def test_patience_counts_epochs_without_improvement():
    es = EarlyStopping(EarlyStoppingSpec(monitor="val_loss", patience=2))
    stops = [es.on_epoch_end(e, {"val_loss": v}) for e, v in enumerate([1.0, 0.9, 0.95, 0.91])]
    assert stops == [False, False, False, True]
    assert (es.best, es.best_epoch, es.stopped_epoch, es.wait) == (0.9, 1, 3, 2)


def test_never_stops_at_epoch_zero_even_with_patience_zero():
    es = EarlyStopping(EarlyStoppingSpec(monitor="loss", patience=0, baseline=0.1))
    # the first monitored epoch is always a new best (and Keras also guards `epoch > 0`)
    assert es.on_epoch_end(0, {"loss": 1.0}) is False
    assert es.on_epoch_end(1, {"loss": 1.0}) is True


def test_baseline_never_beaten_stops_after_patience_and_keeps_best_epoch():
    spec = EarlyStoppingSpec(monitor="val_accuracy", patience=3, baseline=0.9,
                             restore_best_weights=True)  # fmt: skip
    es = EarlyStopping(spec)
    assert es.mode == "max"
    stops = [es.on_epoch_end(e, {"val_accuracy": v}) for e, v in enumerate([0.5, 0.7, 0.6])]
    # improvements below the baseline don't reset wait: it runs for `patience` epochs
    assert stops == [False, False, True]
    assert (es.best, es.best_epoch, es.stopped_epoch, es.should_restore) == (0.7, 1, 2, True)


def test_start_from_epoch_ignores_the_warm_up_epochs():
    es = EarlyStopping(EarlyStoppingSpec(monitor="loss", patience=1, start_from_epoch=3))
    for epoch, value in enumerate([0.1, 5.0, 9.0]):
        assert es.on_epoch_end(epoch, {"loss": value}) is False
        assert not es.is_new_best_this_epoch()
    assert (es.best, es.wait) == (None, 0)
    assert es.on_epoch_end(3, {"loss": 4.0}) is False
    assert (es.best, es.best_epoch, es.is_new_best_this_epoch()) == (4.0, 3, True)
    assert es.on_epoch_end(4, {"loss": 4.0}) is True


def test_min_delta_needs_a_strictly_larger_step():
    es = EarlyStopping(EarlyStoppingSpec(monitor="loss", patience=5, min_delta=0.25))
    es.on_epoch_end(0, {"loss": 2.0})
    es.on_epoch_end(1, {"loss": 1.75})  # exactly min_delta better: no improvement
    assert (es.best, es.wait) == (2.0, 1)
    es.on_epoch_end(2, {"loss": 1.5})
    assert (es.best, es.wait) == (1.5, 0)


def test_state_dict_round_trip_resumes_identically():
    spec = EarlyStoppingSpec(monitor="val_loss", patience=4, baseline=4.0, min_delta=1 / 64)
    values = metric_walk(random.Random(3), 40)
    a = EarlyStopping(spec)
    for epoch in range(10):
        a.on_epoch_end(epoch, {"val_loss": values[epoch]})
    b = EarlyStopping(spec)
    b.load_state_dict(json.loads(json.dumps(a.state_dict(), allow_nan=False)))
    assert b.is_new_best_this_epoch() == a.is_new_best_this_epoch()
    for epoch in range(10, 40):
        sa, sb = (x.on_epoch_end(epoch, {"val_loss": values[epoch]}) for x in (a, b))
        assert sa == sb and a.state_dict() == b.state_dict()
        if sa:
            break


def test_state_dict_is_strict_json_with_nan_best():
    es = EarlyStopping(EarlyStoppingSpec(monitor="loss"))
    es.on_epoch_end(0, {"loss": float("inf")})
    state = json.loads(json.dumps(es.state_dict(), allow_nan=False))
    other = EarlyStopping(EarlyStoppingSpec(monitor="loss"))
    other.load_state_dict(state)
    assert other.best == float("inf")


# --------------------------------------------------------------------------- ml.monitor


@pytest.fixture(scope="module")
def fitted_keras_model():
    """A compiled, fitted Keras model: its metric objects carry the 'auto' directions."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    x, y = np.zeros((8, 4), "float32"), np.arange(8) % 3
    model.fit(x, y, validation_split=0.25, epochs=1, verbose=0)
    return model


@pytest.mark.parametrize("monitor", ["loss", "val_loss", "accuracy", "val_accuracy"])
def test_auto_mode_matches_keras(fitted_keras_model, monitor):
    cb = keras.callbacks.EarlyStopping(monitor=monitor, mode="auto")
    cb.set_model(fitted_keras_model)
    cb._set_monitor_op()
    keras_mode = "max" if cb.monitor_op.__name__ == "greater" else "min"
    assert resolve_mode(monitor, "auto") == keras_mode


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [("val_auc", "max"), ("precision", "max"), ("val_mean_squared_error", "min"),
     ("lr", "min"), ("grad_norm", "min"), ("my_acc", "max"), ("roc_auc", "max")],
)  # fmt: skip
def test_auto_mode_other_names(monitor, mode):
    assert resolve_mode(monitor, "auto") == mode
    assert resolve_mode(monitor, "min") == "min" and resolve_mode(monitor, "max") == "max"


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("min_delta", [0.0, 1 / 8])
def test_is_improvement_matches_keras(mode, min_delta):
    cb = keras.callbacks.EarlyStopping(monitor="x", mode=mode, min_delta=min_delta)
    cb._set_monitor_op()
    grid = [k / 16 for k in range(-8, 9)] + [float("nan")]
    for current, reference in itertools.product(grid, [*grid, None]):
        expected = bool(cb._is_improvement(current, reference))
        assert is_improvement(current, reference, mode, min_delta) == expected, (current, reference)
