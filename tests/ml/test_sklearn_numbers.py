"""ml/sklearn_numbers.py against scikit-learn itself: the same arrays, bit for bit, for
the split, the bundled data sets, the synthetic classification data and the names an
export carries; and a worker's import no longer pulls scikit-learn in."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split

from ml import sklearn_numbers
from ml.checks import builtin_info
from ml.export import builtin_names
from ml.spec import BuiltinSource

LOADERS = {
    "digits": skd.load_digits,
    "iris": skd.load_iris,
    "wine": skd.load_wine,
    "breast_cancer": skd.load_breast_cancer,
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_bundled_data_sets_and_their_names_are_scikit_learns(name: str) -> None:
    bunch = LOADERS[name]()
    loaded = sklearn_numbers.load_named(name)
    assert loaded is not None
    data, target = loaded
    assert data.dtype == bunch.data.dtype and np.array_equal(data, bunch.data)
    assert target.dtype == bunch.target.dtype and np.array_equal(target, bunch.target)
    assert sklearn_numbers.class_names(name) == [str(c) for c in bunch.target_names]
    assert sklearn_numbers.FEATURE_NAMES[name] == [str(f) for f in bunch.feature_names]


def test_a_data_set_it_does_not_read_is_left_to_scikit_learn() -> None:
    assert sklearn_numbers.load_named("diabetes") is None
    assert sklearn_numbers.class_names("diabetes") is None
    source = BuiltinSource(kind="builtin", name="diabetes")
    classes, features = builtin_names(source, builtin_info(source))
    assert classes is None and features == list(skd.load_diabetes().feature_names)


@pytest.mark.parametrize(
    ("n", "features", "classes"),
    [(100, 20, 2), (4000, 128, 2), (257, 5, 3), (999, 64, 10), (50, 3, 5), (333, 8, 17)],
)
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_synthetic_classification_is_make_classification(
    n: int, features: int, classes: int, seed: int
) -> None:
    informative = sklearn_numbers.informative_features(features, classes)
    made = sklearn_numbers.make_classification(n, features, informative, classes, seed)
    assert made is not None
    x, y = skd.make_classification(
        n_samples=n, n_features=features, n_informative=informative, n_redundant=0,
        n_repeated=0, n_classes=classes, n_clusters_per_class=1, random_state=seed,
    )  # fmt: skip
    assert np.array_equal(made[0], x) and made[0].dtype == x.dtype
    assert np.array_equal(made[1], y) and made[1].dtype == y.dtype


def test_a_full_hypercube_is_left_to_scikit_learn() -> None:
    # 4 classes on 2 informative features take every vertex: another sampler there.
    assert sklearn_numbers.make_classification(100, 2, 2, 4, 0) is None


LABELS = {
    "balanced": np.repeat(np.arange(10), 30),
    "skewed": np.array([0] * 91 + [1] * 7 + [2] * 2),
    "ties": np.array([3, 3, 5, 5, 7, 7, 7, 9, 9, 9, 9, 1, 1]),
    "strings": np.array(["b", "a", "c", "a", "b", "c", "a", "b", "c", "c", "a", "b"]),
}


@pytest.mark.parametrize("labels", sorted(LABELS))
@pytest.mark.parametrize("extra", [0, 1, 3])
@pytest.mark.parametrize("seed", [0, 7, 2024])
def test_the_stratified_split_is_train_test_splits(labels: str, extra: int, seed: int) -> None:
    y = LABELS[labels]
    n_test = len(np.unique(y)) + extra  # the split stratifies only with room for each class
    rng = np.random.default_rng(seed)
    y = y[rng.permutation(len(y))]
    expected = train_test_split(
        np.arange(len(y)), test_size=n_test, stratify=y, random_state=seed, shuffle=True
    )
    train, test = sklearn_numbers.train_test_split(len(y), n_test, seed, y)
    assert np.array_equal(train, expected[0]) and np.array_equal(test, expected[1])


@pytest.mark.parametrize(("n", "n_test"), [(10, 1), (150, 30), (1797, 360), (4000, 800)])
@pytest.mark.parametrize("seed", [0, 3, 99])
def test_the_plain_split_is_train_test_splits(n: int, n_test: int, seed: int) -> None:
    expected = train_test_split(np.arange(n), test_size=n_test, random_state=seed, shuffle=True)
    train, test = sklearn_numbers.train_test_split(n, n_test, seed, None)
    assert np.array_equal(train, expected[0]) and np.array_equal(test, expected[1])
