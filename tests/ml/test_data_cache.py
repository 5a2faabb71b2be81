"""Builtin datasets and splits are computed once per process (issue 16); every caller
still gets arrays of its own, equal to an uncached computation."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from ml import data
from ml.spec import JobSpec

DIGITS = JobSpec.model_validate({"dataset": {"source": {"kind": "builtin", "name": "digits"}}})


def test_a_cached_builtin_dataset_is_a_fresh_copy_for_every_job() -> None:
    first = data.load_dataset(DIGITS)
    first.x[:] = -1.0  # a job that scribbles on its arrays
    second = data.load_dataset(DIGITS)
    assert second.x.shape == (1797, 1, 8, 8) and second.x.dtype == np.float32
    assert second.x.min() == 0.0 and second.x is not first.x


def test_a_cached_split_equals_the_uncached_one_and_is_not_shared() -> None:
    ds = data.load_dataset(DIGITS)
    train, val = data.split_indices(ds, 0.2, 7)
    n_val = len(ds.y) - int(len(ds.y) * 0.8)
    expect_train, expect_val = train_test_split(
        np.arange(len(ds.y)), test_size=n_val, stratify=ds.y, random_state=7, shuffle=True
    )
    np.testing.assert_array_equal(train, expect_train)
    np.testing.assert_array_equal(val, expect_val)
    train[:] = 0
    again, _ = data.split_indices(ds, 0.2, 7)
    np.testing.assert_array_equal(again, expect_train)
    other_seed, _ = data.split_indices(ds, 0.2, 8)
    assert not np.array_equal(other_seed, expect_train)
