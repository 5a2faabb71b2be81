"""Datasets: load, split, normalize, put on the training device, and batch.

- Builtins come from scikit-learn (shipped with it, nothing is downloaded);
  ``synthetic`` is generated from ``spec.seed``. Anything else (an upload) is
  handed to the engine as a :class:`LoadedDataset`.
- The validation split is scikit-learn's ``train_test_split`` with
  ``n_val = ceil(n · validation_split)`` (``ml.plan.split_sizes``), stratified
  for classification, seeded by ``spec.seed``. It falls back to an
  unstratified split when a class has fewer than two samples.
- Normalization statistics come from the training split only and are then
  applied to both splits. Tabular data is scaled per feature, images per
  channel (over N, H, W), so that augmentation moves pixels between positions
  that share one scale. A constant feature keeps scale 1.
- Data that fits stays on the device as two tensors; an epoch is a seeded
  permutation (derived from (seed, epoch), so a resumed run replays it) sliced
  into batches by index: no DataLoader, no per-sample Python. The last partial
  batch is kept, as Keras does.
- Data too big for the GPU stays in pinned host memory, normalized in chunks
  straight into its final tensors (host RAM: the loaded array plus one copy, as
  ``ml.resources`` estimates); a shuffled batch is gathered into one of two
  reusable pinned buffers, so its copy to the device is asynchronous.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ml import sklearn_numbers
from ml.architecture import TrainError
from ml.checks import DatasetInfo, builtin_info
from ml.encoding import EncodingError, TableColumns, TableEncoder, fit_table
from ml.plan import split_sizes
from ml.spec import BuiltinSource, JobSpec, Normalization

# Keep data on a GPU only while it takes at most this share of the free memory.
_DEVICE_SHARE = 0.5


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset in host memory, before splitting.

    ``x``: float array (N, F) for tabular data or (N, C, H, W) for images.
    ``y``: class ids 0..K-1 (N,) for classification, targets (N,) for regression.
    """

    x: NDArray[np.floating]
    y: NDArray[np.generic]
    info: DatasetInfo
    table: TableColumns | None = None  # an uploaded table's column types (ml.encoding)


def load_dataset(spec: JobSpec) -> LoadedDataset:
    source = spec.dataset.source
    if not isinstance(source, BuiltinSource):
        raise TrainError(
            f"dataset {source.dataset_id!r} is an upload: the worker must load it and pass "
            "it as train(..., dataset=LoadedDataset(...))"
        )
    info = builtin_info(source)
    if source.name == "synthetic":  # generated per job: seeded, and may be large
        x, y = _synthetic(info, spec.seed)
        x = x.astype(np.float32)
    else:
        # A worker runs many small jobs on the same few scikit-learn datasets: each is
        # read once per process, and every job gets its own copy of the arrays.
        cached_x, cached_y = _named_builtin(source.name)
        x, y = cached_x.copy(), cached_y.copy()
    if info.image_shape is not None:
        x = x.reshape(len(x), *info.image_shape)
    return LoadedDataset(x, y, info)


@lru_cache(maxsize=8)
def _named_builtin(name: str) -> tuple[NDArray[np.floating], NDArray[np.generic]]:
    named = sklearn_numbers.load_named(name)
    if named is not None:  # the same arrays, without importing scikit-learn
        return named[0].astype(np.float32), named[1]
    from sklearn import datasets as skd

    loaders = {
        "digits": skd.load_digits,
        "iris": skd.load_iris,
        "wine": skd.load_wine,
        "breast_cancer": skd.load_breast_cancer,
        "diabetes": skd.load_diabetes,
    }
    bunch = loaders[name]()
    return np.asarray(bunch.data).astype(np.float32), np.asarray(bunch.target)


def _synthetic(info: DatasetInfo, seed: int) -> tuple[NDArray[np.floating], NDArray[np.generic]]:
    n, k = info.n_samples, info.n_classes
    if info.task == "classification" and k < 2:
        raise TrainError("a synthetic classification needs n_classes >= 2 (0 for regression)")
    if info.image_shape is not None:
        return _synthetic_images(n, k, info.image_shape, seed)
    f = info.n_features
    if info.task == "regression":
        from sklearn import datasets as skd

        x, y = skd.make_regression(
            n_samples=n, n_features=f, n_informative=min(f, 10), noise=0.1, random_state=seed
        )
        return x, y
    informative = sklearn_numbers.informative_features(f, k)
    if 2**informative < k:
        raise TrainError(
            f"{k} synthetic classes need at least {math.ceil(math.log2(k))} features; "
            "raise dataset.source.synthetic.n_features"
        )
    made = sklearn_numbers.make_classification(n, f, informative, k, seed)
    if made is not None:  # scikit-learn's arrays, without importing it
        return made
    from sklearn import datasets as skd

    x, y = skd.make_classification(
        n_samples=n, n_features=f, n_informative=informative, n_redundant=0,
        n_repeated=0, n_classes=k, n_clusters_per_class=1, random_state=seed,
    )  # fmt: skip
    return x, y


def _synthetic_images(
    n: int, k: int, shape: tuple[int, int, int], seed: int
) -> tuple[NDArray[np.floating], NDArray[np.generic]]:
    """Smooth random images: class prototypes plus noise (or a regression on their mean)."""
    rng = np.random.default_rng(seed)

    def smooth(a: NDArray[np.floating]) -> NDArray[np.floating]:
        for axis in (-1, -2):  # two passes of a 3-tap box filter per spatial axis
            for _ in range(2):
                a = (np.roll(a, 1, axis) + a + np.roll(a, -1, axis)) / 3
        out: NDArray[np.floating] = a / (a.std(axis=(-3, -2, -1), keepdims=True) + 1e-8)
        return out

    if k == 0:
        x = smooth(rng.standard_normal((n, *shape)))
        y = x[:, :, : shape[1] // 2].mean(axis=(1, 2, 3)) * 10 + rng.normal(0, 0.1, n)
        return x, y
    prototypes = smooth(rng.standard_normal((k, *shape)))
    y = rng.integers(0, k, n)
    x = prototypes[y] + rng.standard_normal((n, *shape))
    return x, y


def split_indices(
    ds: LoadedDataset, validation_split: float, seed: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(train, validation) row indices: seeded, stratified for classification."""
    n = len(ds.y)
    n_train, n_val = split_sizes(n, validation_split)
    if n_val == 0:
        return np.arange(n), np.arange(0)
    if n_train < 1:
        raise TrainError(f"validation_split {validation_split} leaves no training sample")
    stratify = None
    if ds.info.task == "classification":
        counts = np.unique(ds.y, return_counts=True)[1]
        if counts.min() >= 2 and min(n_train, n_val) >= len(counts):
            stratify = np.ascontiguousarray(ds.y)
    # A job splits its data several times (training, its export's statistics and parity
    # check, a text vocabulary): the same answer each time, computed once.
    if n > _SPLIT_CACHE_ROWS:
        return _split.__wrapped__(n, n_val, seed, stratify)
    labels = None if stratify is None else (stratify.tobytes(), stratify.dtype.str)
    train, val = _split(n, n_val, seed, labels)
    return train.copy(), val.copy()


_SPLIT_CACHE_ROWS = 50_000  # larger datasets split without the cache (its keys are labels)


@lru_cache(maxsize=16)
def _split(
    n: int, n_val: int, seed: int, labels: tuple[bytes, str] | NDArray[np.generic] | None
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    stratify = np.frombuffer(labels[0], dtype=labels[1]) if isinstance(labels, tuple) else labels
    # scikit-learn's train_test_split, index for index (ml/sklearn_numbers.py)
    train, val = sklearn_numbers.train_test_split(n, n_val, seed, stratify)
    return np.asarray(train), np.asarray(val)


def fit_normalization(
    x: NDArray[np.floating], kind: Normalization, rows: NDArray[np.intp] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """(shift, scale) so that (x - shift) / scale is normalized, from ``x[rows]`` (all rows
    by default); None for ``none``.

    Computed chunk by chunk in float64 (two passes for ``standard``), so a large data set
    costs no float64 copy of itself and no copy of its training rows: host memory stays at
    the data and its prepared splits, as ``ml.resources`` estimates.
    """
    if kind == "none":
        return None
    axes = (0, 2, 3) if x.ndim == 4 else (0,)  # per channel for images
    rows = np.arange(len(x)) if rows is None else rows
    if len(rows) == 0:
        return None
    step = max(1, _CHUNK_VALUES // max(1, math.prod(x.shape[1:])))

    def chunks() -> Iterator[NDArray[np.float64]]:
        for lo in range(0, len(rows), step):
            yield x[rows[lo : lo + step]].astype(np.float64)

    if kind == "standard":
        count = len(rows) * (math.prod(x.shape[2:]) if x.ndim == 4 else 1)
        shift = sum(c.sum(axis=axes, keepdims=True) for c in chunks()) / count
        squares = sum(np.square(c - shift).sum(axis=axes, keepdims=True) for c in chunks())
        scale = np.sqrt(squares / count)
    else:
        lo = np.minimum.reduce([c.min(axis=axes, keepdims=True) for c in chunks()])
        hi = np.maximum.reduce([c.max(axis=axes, keepdims=True) for c in chunks()])
        if kind == "minmax":  # [0, 1]
            shift, scale = lo, hi - lo
        else:  # minmax_symmetric: [-1, 1]
            shift, scale = (hi + lo) / 2, (hi - lo) / 2
    scale = np.where(scale > 0, scale, 1.0)
    return np.asarray(shift, dtype=np.float64), scale


@dataclass
class DeviceData:
    """The splits as tensors: on the training device when they fit, else host memory."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor | None
    y_val: Tensor | None
    info: DatasetInfo
    device: torch.device  # where batches must end up
    # (input column, slots, dim) of each categorical column a learned embedding encodes
    embeddings: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_val(self) -> int:
        return 0 if self.x_val is None else int(self.x_val.shape[0])


def prepare(spec: JobSpec, ds: LoadedDataset, device: torch.device) -> DeviceData:
    """Split, normalize with training statistics, and place the data."""
    train, val = split_indices(ds, spec.dataset.validation_split, spec.seed)
    x = np.asarray(ds.x, dtype=np.float32)
    encoder = table_encoder(spec, ds, train)
    info = ds.info
    if encoder is not None:
        x = encoder.transform(x)
        info = replace(info, n_features=encoder.width)
    else:
        x = impute_missing(x, train)
    # Token ids (text) are indices, never scaled.
    normalization = (
        "none" if ds.info.modality == "text" else spec.dataset.preprocessing.normalization
    )
    stats = fit_normalization(x, normalization, train)
    if stats is not None and encoder is not None:
        stats = unscaled_where(stats, ~encoder.scalable())
    if ds.info.task == "classification":
        y = torch.from_numpy(np.asarray(ds.y, dtype=np.int64))
    else:  # (N, 1) to match the single output unit
        y = torch.from_numpy(np.asarray(ds.y, dtype=np.float32).reshape(-1, 1))
    on_device = _fits(device, x.nbytes + y.numel() * y.element_size())
    # Too big for the GPU: the splits stay in pinned host memory, batches are copied one by one.
    pin = device.type == "cuda" and not on_device

    def place(t: Tensor) -> Tensor:
        return t.to(device) if on_device else t

    def rows(index: NDArray[np.intp]) -> Tensor:
        return place(normalized_rows(x, index, stats, pin))

    def labels(index: NDArray[np.intp]) -> Tensor:
        chosen = y[torch.from_numpy(index)]
        return place(chosen.pin_memory() if pin else chosen)

    return DeviceData(
        x_train=rows(train),
        y_train=labels(train),
        x_val=rows(val) if len(val) else None,
        y_val=labels(val) if len(val) else None,
        info=info,
        device=device,
        embeddings=encoder.embeddings() if encoder is not None else [],
    )


_CHUNK_VALUES = 1 << 22  # normalize 4M values (32 MiB of float64) at a time


def normalized_rows(
    x: NDArray[np.float32],
    index: NDArray[np.intp],
    stats: tuple[NDArray[np.float64], NDArray[np.float64]] | None,
    pin: bool = False,
) -> Tensor:
    """``x[index]``, normalized as ``((x - shift) / scale)`` in float64 then float32, written
    chunk by chunk into the tensor that keeps it (pinned with ``pin``): no full-size
    temporaries besides that tensor."""
    out = torch.empty((len(index), *x.shape[1:]), dtype=torch.float32, pin_memory=pin)
    view = out.numpy()
    per_row = max(1, math.prod(x.shape[1:]))
    step = max(1, _CHUNK_VALUES // per_row)
    for lo in range(0, len(index), step):
        part = x[index[lo : lo + step]]
        view[lo : lo + step] = part if stats is None else (part - stats[0]) / stats[1]
    return out


def table_encoder(spec: JobSpec, ds: LoadedDataset, train: NDArray[np.intp]) -> TableEncoder | None:
    """An uploaded table's column encodings, fitted on the training rows (None: numbers only,
    read the mean-imputing way)."""
    if ds.table is None or not ds.table.needs_encoding(spec.dataset.columns):
        return None
    t = ds.table
    try:
        return fit_table(
            np.asarray(ds.x)[train], t.columns, t.feature_names, spec.dataset.columns, t.impute
        )
    except EncodingError as exc:
        raise TrainError(str(exc)) from exc


def unscaled_where(
    stats: tuple[NDArray[np.float64], NDArray[np.float64]], mask: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Normalization statistics that leave the ``mask`` columns (one-hot, codes) as they are."""
    shift, scale = stats[0].copy(), stats[1].copy()
    shift[..., mask], scale[..., mask] = 0.0, 1.0
    return shift, scale


def impute_missing(x: NDArray[np.float32], train: NDArray[np.intp]) -> NDArray[np.float32]:
    """Missing features (NaN, kept by an upload with ``impute=mean``) become the
    training split's per-feature means: statistics of the training rows only, like
    normalization. A feature with no training value falls back to all rows' mean."""
    if np.isfinite(x.sum(dtype=np.float64)):
        return x  # NaN propagates through a sum: none here, and no mask the size of x built
    missing = np.isnan(x)
    if not missing.any():
        return x
    return np.where(missing, imputation_means(x, train)[None, ...], x).astype(np.float32)


def imputation_means(x: NDArray[np.float32], train: NDArray[np.intp]) -> NDArray[np.float32]:
    """The per-feature fill values of :func:`impute_missing` (also baked into an export)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices, handled below
        means = np.nanmean(x[train], axis=0)
        means = np.where(np.isnan(means), np.nanmean(x, axis=0), means)
    return np.asarray(np.nan_to_num(means, nan=0.0), dtype=np.float32)


def _fits(device: torch.device, nbytes: int) -> bool:
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    # Blocks this process's caching allocator holds but no tensor uses (an earlier job's,
    # say) are free for this job too: the driver counts them as used.
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return nbytes <= _DEVICE_SHARE * (free + cached)


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for one epoch's data order."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint64)[0] >> 1)


def n_batches(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def train_batches(
    data: DeviceData,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    start: int = 0,
    part: tuple[int, int] | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """The epoch's batches from batch ``start`` on (a resumed epoch skips what it did).

    ``part`` (rank, world): only that rank's ``batch_size / world`` rows of each batch of the
    single-process order (``ml.distributed``); the last partial batch may leave it fewer, or
    none."""
    n, x, y = data.n_train, data.x_train, data.y_train
    order: Tensor | None = None
    if shuffle:
        gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        order = torch.randperm(n, generator=gen).to(x.device)
    copy = x.device != data.device  # only when the data did not fit on the device
    staging = _Staging(x, y, batch_size) if copy and order is not None else None
    for b in range(start, n_batches(n, batch_size)):
        lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
        if part is not None:
            per = batch_size // part[1]
            lo, hi = min(lo + part[0] * per, hi), min(lo + (part[0] + 1) * per, hi)
        if staging is not None and order is not None:
            xb, yb = staging.gather(order[lo:hi])
        elif order is None:
            xb, yb = x[lo:hi], y[lo:hi]
        else:
            idx = order[lo:hi]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        if copy:
            xb, yb = xb.to(data.device, non_blocking=True), yb.to(data.device, non_blocking=True)
            if staging is not None:
                staging.copied_out()
        yield xb, yb


class _Staging:
    """Two reusable host buffers (pinned where the data is) for shuffled batches: a batch is
    gathered into one while the other's asynchronous copy to the device may still run.
    Before a buffer is refilled, the copy out of it (two batches ago) must be done."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int) -> None:
        pin = x.is_pinned()

        def buffer(t: Tensor) -> Tensor:
            return torch.empty((batch_size, *t.shape[1:]), dtype=t.dtype, pin_memory=pin)

        self.x, self.y = x, y
        self.buffers = [(buffer(x), buffer(y)) for _ in range(2)]
        self.copied: list[torch.cuda.Event | None] = [None, None]
        self.turn = 0

    def gather(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        k, self.turn = self.turn, 1 - self.turn
        previous = self.copied[k]
        if previous is not None:
            previous.synchronize()  # the copy from this buffer two batches ago
        bx, by = self.buffers[k]
        xb = torch.index_select(self.x, 0, idx, out=bx[: len(idx)])
        yb = torch.index_select(self.y, 0, idx, out=by[: len(idx)])
        return xb, yb

    def copied_out(self) -> None:
        """Mark the buffer last gathered into as in flight (after its ``to(device)``)."""
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record()
            self.copied[1 - self.turn] = event


def eval_batches(
    x: Tensor, y: Tensor, batch_size: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    for lo in range(0, int(x.shape[0]), batch_size):
        hi = lo + batch_size
        yield x[lo:hi].to(device, non_blocking=True), y[lo:hi].to(device, non_blocking=True)
