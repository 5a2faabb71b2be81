"""The data of a job that trains on an upload: stored bytes -> the engine's ``LoadedDataset``.

``load_for_job`` returns None for a builtin dataset (the engine loads those
itself). For an upload it reads the chunks (team-scoped, checksummed),
decodes the pickle-free ``.npz`` and hands back arrays the engine takes:

- tabular: float32 (N, F); images: (N, C, H, W) as float32 (uint8 pixels
  keep their 0..255 values; the spec's normalization scales them);
- text: the job's ``preprocessing.text_cleaning`` and a vocabulary built on
  the job's training split (the engine's own seeded, stratified split, so a
  validation text never shapes the vocabulary) turn each text into
  ``model.max_length`` token ids (``ml.text``).

Problems a user can act on (the dataset was deleted, its content is damaged)
raise ``TrainError``, which the runner reports on the failed job.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from api.datasets import codec
from api.datasets import repository as repo
from api.ledger.models import Job
from ml.architecture import TrainError
from ml.checks import DatasetInfo
from ml.data import LoadedDataset, split_indices
from ml.encoding import TableColumns
from ml.graph_spec import GraphModel, TransformerModel
from ml.spec import JobSpec, TextModel, UploadedSource
from ml.text import build_vocabulary, encode, tokenize


def load_for_job(factory: sessionmaker[Session], job: Job) -> LoadedDataset | None:
    spec = JobSpec.model_validate(job.spec)
    source = spec.dataset.source
    if not isinstance(source, UploadedSource):
        return None
    with factory() as session:
        stored = repo.get_dataset(session, source.dataset_id, job.team_id)
        if stored is None:
            raise TrainError(
                f"dataset {source.dataset_id!r} no longer exists (was it deleted?): upload it "
                "again and submit a job that uses the new id"
            )
        try:
            content = repo.read_content(session, stored)
        except repo.CorruptDataset as exc:
            raise TrainError(f"{exc}: upload the dataset again") from exc
        meta = dict(stored.info)
        options = dict(stored.options or {})
    return to_loaded(spec, codec.decode(content), codec.dataset_info(meta), table_of(meta, options))


def table_of(meta: dict[str, Any], options: dict[str, Any]) -> TableColumns | None:
    """A csv upload's column types (None for other formats and older csv uploads)."""
    if not meta.get("columns"):
        return None
    return TableColumns(
        list(meta["columns"]),
        list(meta.get("feature_names") or []),
        str(options.get("impute") or "none"),
        options.get("label_column"),
    )


def to_loaded(
    spec: JobSpec, data: codec.Decoded, info: DatasetInfo, table: TableColumns | None = None
) -> LoadedDataset:
    y = data.y.astype(np.int64 if info.task == "classification" else np.float32)
    if info.modality != "text":
        if data.x is None:
            raise TrainError("the stored dataset has no features: upload it again")
        x = data.x.astype(np.float32)
        if len(x) != len(y) or (info.image_shape is not None and x.shape[1:] != info.image_shape):
            raise TrainError("the stored dataset does not match its description: upload it again")
        return LoadedDataset(x=x, y=y, info=info, table=table)
    if data.texts is None:
        raise TrainError("the stored text dataset has no texts: upload it again")
    model = spec.model
    if not isinstance(model, TextModel | GraphModel | TransformerModel):
        raise TrainError(
            f"a text dataset needs model.kind 'text', 'transformer' or 'graph', not {model.kind!r}"
        )
    tokens, vocab = text_vocabulary(spec, model, data.texts, y, info)
    # float32 holds every id exactly (vocab_size <= 1e6 < 2**24); the model casts back.
    ids = np.array([encode(t, vocab, model.max_length) for t in tokens], dtype=np.float32)
    return LoadedDataset(x=ids.reshape(len(y), model.max_length), y=y, info=info)


def text_vocabulary(
    spec: JobSpec,
    model: TextModel | GraphModel | TransformerModel,
    texts: list[str],
    y: np.ndarray,
    info: DatasetInfo,
) -> tuple[list[list[str]], dict[str, int]]:
    """Every text's tokens, and the vocabulary of the job's training split (a model export
    ships it)."""
    cleaning = spec.dataset.preprocessing.text_cleaning
    tokens = [tokenize(t, cleaning) for t in texts]
    # The engine splits again with the same function, seed and labels: same rows.
    placeholder = LoadedDataset(x=np.empty((len(y), 0), np.float32), y=y, info=info)
    train, _ = split_indices(placeholder, spec.dataset.validation_split, spec.seed)
    return tokens, build_vocabulary((tokens[i] for i in train), model.vocab_size)
