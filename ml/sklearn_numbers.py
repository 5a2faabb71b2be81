"""scikit-learn's numbers for what every job uses, without importing scikit-learn.

Importing scikit-learn costs a process ~1.2 s of CPU here (it imports SciPy's stats and
pandas). Every worker paid it at start, and most jobs need only three things from it:
the validation split (``train_test_split``), the bundled data sets, and the synthetic
classification data (``make_classification``). This module computes exactly the same
arrays from the same random streams (``numpy.random.RandomState``) and the same files,
so nothing a job trains on changes; ``tests/ml/test_sklearn_numbers.py`` compares every
function here with scikit-learn itself. What is rarer (``diabetes``, a synthetic
regression, an edge of ``make_classification``) still asks scikit-learn: the callers
fall back when a function here answers None.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

CSV_FILES = {"iris": "iris.csv", "wine": "wine_data.csv", "breast_cancer": "breast_cancer.csv"}

# scikit-learn's loaders name the columns in code, not in the files.
_BREAST = (
    "radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
    "concave points", "symmetry", "fractal dimension",
)  # fmt: skip
_WINE = (
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
    "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
    "od280/od315_of_diluted_wines", "proline",
)  # fmt: skip
FEATURE_NAMES: dict[str, list[str]] = {
    "digits": [f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
    "iris": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
    "wine": list(_WINE),
    "breast_cancer": [
        *(f"mean {name}" for name in _BREAST),
        *(f"{name} error" for name in _BREAST),
        *(f"worst {name}" for name in _BREAST),
    ],
}


def _data_dir() -> Path:
    """scikit-learn's bundled data files, found without running its ``__init__``."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("scikit-learn is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def load_named(name: str) -> tuple[NDArray[np.float64], NDArray[np.int_]] | None:
    """(data, target) as ``sklearn.datasets.load_<name>()`` has them; None for a data set
    this module does not read."""
    if name == "digits":
        with gzip.open(_data_dir() / "digits.csv.gz", "rt", encoding="utf-8") as f:
            table = np.loadtxt(f, delimiter=",")
        return table[:, :-1], table[:, -1].astype(int, copy=False)
    if name not in CSV_FILES:
        return None
    with (_data_dir() / CSV_FILES[name]).open("r", encoding="utf-8") as f:
        rows = csv.reader(f)
        head = next(rows)
        data = np.empty((int(head[0]), int(head[1])))
        target = np.empty((int(head[0]),), dtype=int)
        for i, row in enumerate(rows):
            data[i] = np.asarray(row[:-1], dtype=np.float64)
            target[i] = np.asarray(row[-1], dtype=int)
    return data, target


def class_names(name: str) -> list[str] | None:
    """``load_<name>().target_names`` as strings, read from the file's header only."""
    if name == "digits":
        return [str(i) for i in range(10)]
    if name not in CSV_FILES:
        return None
    with (_data_dir() / CSV_FILES[name]).open("r", encoding="utf-8") as f:
        return [str(c) for c in next(csv.reader(f))[2:]]


def make_classification(
    n_samples: int, n_features: int, n_informative: int, n_classes: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.int_]] | None:
    """``make_classification(n_samples, n_features, n_informative=..., n_redundant=0,
    n_repeated=0, n_classes=..., n_clusters_per_class=1, random_state=seed)`` with its
    other defaults, draw for draw. None where scikit-learn would pick its vertices by
    another sampler (more than 99 % or under 1 % of the hypercube's vertices)."""
    population = 2**n_informative
    ratio = n_classes / population
    if not 0.01 < ratio < 0.99 or n_informative > 30:
        return None
    rng = np.random.RandomState(seed)
    per_cluster = [int(n_samples * (1.0 / n_classes))] * n_classes  # equal weights
    for i in range(n_samples - sum(per_cluster)):
        per_cluster[i % n_classes] += 1
    x = np.zeros((n_samples, n_features))
    y = np.zeros(n_samples, dtype=int)
    # The clusters' centroids: distinct vertices of a hypercube (sample_without_replacement
    # takes a permutation's head at these ratios).
    picks = rng.permutation(population)[:n_classes].astype(">u4", copy=False)
    vertices = np.unpackbits(picks.view(">u1")).reshape((-1, 32))[:, -n_informative:]
    centroids = vertices.astype(float, copy=False)
    centroids *= 2.0  # 2 * class_sep
    centroids -= 1.0
    x[:, :n_informative] = rng.standard_normal(size=(n_samples, n_informative))
    stop = 0
    for k, centroid in enumerate(centroids):
        start, stop = stop, stop + per_cluster[k]
        y[start:stop] = k % n_classes
        cluster = x[start:stop, :n_informative]
        covariance = 2 * rng.uniform(size=(n_informative, n_informative)) - 1
        cluster[...] = np.dot(cluster, covariance)
        cluster += centroid
    n_random = n_features - n_informative
    if n_random > 0:
        x[:, -n_random:] = rng.standard_normal(size=(n_samples, n_random))
    flip = rng.uniform(size=n_samples) < 0.01  # flip_y
    y[flip] = rng.randint(n_classes, size=flip.sum())
    x += 0.0  # shift (turns -0.0 into 0.0, as scikit-learn's does; scale 1 is a no-op)
    rows = np.arange(n_samples)  # sklearn.utils.shuffle
    rng.shuffle(rows)
    x, y = x[rows], y[rows]
    columns = np.arange(n_features)
    rng.shuffle(columns)
    x[:, :] = x[:, columns]
    return x, y


def train_test_split(
    n: int, n_test: int, seed: int, stratify: NDArray[np.generic] | None
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The (train, test) indices of ``train_test_split(np.arange(n), test_size=n_test,
    stratify=stratify, random_state=seed, shuffle=True)``."""
    n_train = n - n_test
    rng = np.random.RandomState(seed)
    if stratify is None:  # ShuffleSplit
        permutation = rng.permutation(n)
        return permutation[n_test : n_test + n_train], permutation[:n_test]
    # StratifiedShuffleSplit; the caller has checked each class has two members and
    # both sides have room for one of each.
    _, y_indices, class_counts = np.unique(stratify, return_inverse=True, return_counts=True)
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[np.intp] = []
    test: list[np.intp] = []
    for i in range(len(class_counts)):
        permutation = rng.permutation(class_counts[i])
        members = class_indices[i].take(permutation, mode="clip")
        train.extend(members[: n_i[i]])
        test.extend(members[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(
    class_counts: NDArray[np.int_], n_draws: int, rng: np.random.RandomState
) -> NDArray[np.int_]:
    """``sklearn.utils.extmath._approximate_mode``: how many of each class to draw."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    counts: NDArray[np.int_] = floored.astype(int)
    return counts


def informative_features(n_features: int, n_classes: int) -> int:
    """Enough informative features to place one cluster per class on a hypercube."""
    return min(n_features, max(2, math.ceil(math.log2(n_classes)) + 1))
