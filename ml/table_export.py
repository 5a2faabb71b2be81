"""The model export of a job on an uploaded table with encoded columns (``ml.encoding``).

The graph's input stays one float32 per used column in the stored form (``model.json``
``columns`` says, per input column, its type and the upload's categories: a category's
input is its index there, a boolean 0/1, a date its days since 1970-01-01 UTC, a missing
cell NaN, a category the upload never had -1). Inside the graph: the job's encodings
(``ml.encoding_torch``), then its normalization, then the model. The API's ``/predict``
turns rows as uploaded (strings, booleans, ISO dates, empty cells) into that input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from ml.data import LoadedDataset, fit_normalization, split_indices, table_encoder, unscaled_where
from ml.embedding_front import build_table_model
from ml.encoding import TableEncoder
from ml.spec import JobSpec


def encoder_for(spec: JobSpec, ds: LoadedDataset) -> TableEncoder | None:
    """The job's fitted encodings, or None when the table is read the plain numeric way."""
    if ds.table is None:
        return None
    train, _ = split_indices(ds, spec.dataset.validation_split, spec.seed)
    return table_encoder(spec, ds, train)


def statistics(
    spec: JobSpec, ds: LoadedDataset, encoder: TableEncoder
) -> tuple[np.ndarray, np.ndarray] | None:
    """(shift, scale) of the encoded training rows, as ``ml.data.prepare`` computes them."""
    train, _ = split_indices(ds, spec.dataset.validation_split, spec.seed)
    x = encoder.transform(np.asarray(ds.x, dtype=np.float32)[train])
    stats = fit_normalization(x, spec.dataset.preprocessing.normalization)
    if stats is None:
        return None
    shift, scale = unscaled_where(stats, ~encoder.scalable())
    return shift.astype(np.float32), scale.astype(np.float32)


def table_model(spec: JobSpec, ds: LoadedDataset, encoder: TableEncoder) -> nn.Module:
    """The job's model as the trainer built it (an embedding front when columns are embedded)."""
    from dataclasses import replace

    info = replace(ds.info, n_features=encoder.width)
    return build_table_model(spec, info, encoder.embeddings())


def columns_metadata(ds: LoadedDataset, encoder: TableEncoder) -> list[dict[str, Any]]:
    """Every input column of the graph, in input order: what a row's cell must be."""
    assert ds.table is not None
    by_name = {str(c["name"]): c for c in ds.table.columns}
    fitted = {c.name: c for c in encoder.columns}
    out = []
    for name in ds.table.feature_names:
        meta = by_name[name]
        entry: dict[str, Any] = {"name": name, "type": meta["type"]}
        if meta.get("categories") is not None:
            entry["categories"] = meta["categories"]
        c = fitted.get(name)
        entry["encoding"] = c.describe() if c is not None else {"encoding": "ignored"}
        entry["missing_allowed"] = c is None or c.kind == "categorical" or c.fill is not None
        out.append(entry)
    return out


def table_model_for(spec: JobSpec, ds: LoadedDataset) -> nn.Module | None:
    """The unweighted model of a job on an encoded table (None: ``build_model``'s)."""
    encoder = encoder_for(spec, ds)
    return None if encoder is None else table_model(spec, ds, encoder)


def ignored_columns(ds: LoadedDataset) -> list[str]:
    """Columns of the upload that are not inputs (left out, the label): a raw row may
    carry them, and they are ignored."""
    assert ds.table is not None
    used = set(ds.table.feature_names)
    out = [str(c["name"]) for c in ds.table.columns if str(c["name"]) not in used]
    return out + ([ds.table.label] if ds.table.label else [])
