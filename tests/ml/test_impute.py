"""Missing features of an upload sent with ``impute=mean`` are filled per job with
the training split's means: the validation rows never feed what training sees."""

from __future__ import annotations

import numpy as np
import torch

from ml.checks import DatasetInfo
from ml.data import LoadedDataset, prepare, split_indices
from ml.spec import JobSpec

CPU = torch.device("cpu")
SPEC = JobSpec.model_validate(
    {
        "dataset": {
            "source": {"kind": "uploaded", "dataset_id": "d1"},
            "validation_split": 0.25,
            "preprocessing": {"normalization": "none"},
        }
    }
)


def with_holes(n: int = 80) -> LoadedDataset:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = np.arange(n) % 2
    x[::5, 0] = np.nan  # every fifth row misses feature 0
    x[:, 2] = np.nan  # feature 2 is known in one row only
    x[1, 2] = 7.0
    return LoadedDataset(x, y, DatasetInfo("classification", "tabular", n, 3, None, 2))


def test_missing_values_take_the_training_means_only() -> None:
    ds = with_holes()
    train_idx, val_idx = split_indices(ds, 0.25, SPEC.seed)
    data = prepare(SPEC, ds, CPU)
    x_train, x_val = data.x_train.numpy(), data.x_val.numpy()  # type: ignore[union-attr]
    assert np.isfinite(x_train).all() and np.isfinite(x_val).all()
    train_mean = np.nanmean(ds.x[train_idx, 0])
    for rows, got in ((train_idx, x_train), (val_idx, x_val)):
        holes = np.isnan(ds.x[rows, 0])
        assert holes.any()
        np.testing.assert_allclose(got[holes, 0], train_mean, rtol=1e-6)
        np.testing.assert_array_equal(got[~holes, 0], ds.x[rows, 0][~holes])  # the rest untouched
    # The mean over all rows differs: the validation rows would have leaked into it.
    assert not np.isclose(train_mean, np.nanmean(ds.x[:, 0]))
    # A feature with no training value falls back to the mean over all rows.
    assert (np.concatenate([x_train[:, 2], x_val[:, 2]]) == 7.0).all()


def test_a_dataset_without_holes_is_left_alone() -> None:
    ds = with_holes()
    ds.x[np.isnan(ds.x)] = 1.5
    data = prepare(SPEC, ds, CPU)
    train_idx, _ = split_indices(ds, 0.25, SPEC.seed)
    np.testing.assert_array_equal(data.x_train.numpy(), ds.x[train_idx])
