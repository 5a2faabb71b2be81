"""Export a job's model when its training ends: the final weights as ONNX plus model.json.

Runs in the worker for every job that trained (at least one epoch done), whatever
its ending: completed, early stopped (the restored best weights with
``restore_best_weights``: they are the final checkpoint's), or canceled. The
weights come from the job's latest checkpoint, which the engine saves at every
ending. An export that fails (or whose ONNX Runtime outputs differ from
PyTorch's) is recorded as the export's error, visible on the job; the job's own
status never depends on it.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from api.checkpoints import repository as ckpt_repo
from api.datasets import codec
from api.datasets import repository as datasets_repo
from api.ledger import repository as jobs_repo
from api.ledger.models import Job
from api.predict import repository as repo
from ml.architecture import TrainError
from ml.data import LoadedDataset, load_dataset
from ml.export import (
    ExportContext,
    ExportError,
    InputFormat,
    Layout,
    builtin_names,
    export_model,
    model_from_weights,
)
from ml.graph_spec import GraphModel, TransformerModel
from ml.spec import BuiltinSource, JobSpec, TextModel
from ml.table_export import table_model_for
from worker.datasets import text_vocabulary
from worker.metric_sink import with_db_retry

log = logging.getLogger(__name__)


def export_job(
    factory: sessionmaker[Session],
    job_id: str,
    attempt: int,
    spec: JobSpec,
    dataset: LoadedDataset | None,
    final_metrics: dict[str, float],
) -> bool:
    """Export and store the job's model; record the error instead when it fails.

    Returns whether a ready export was stored. Raises only ``StaleAttempt`` (the
    job is no longer this worker's: nothing is written).
    """
    try:
        ds = dataset if dataset is not None else load_dataset(spec)
        weights = with_db_retry(factory, lambda s: _final_weights(s, job_id))
        model = model_from_weights(spec, ds.info, weights, table_model_for(spec, ds))
        ctx = with_db_retry(factory, lambda s: _context(s, job_id, spec, ds, final_metrics))
        bundle = export_model(model, spec, ds, ctx)
    except jobs_repo.StaleAttempt:
        raise
    except Exception as exc:  # noqa: BLE001 -- recorded on the job; its status stays
        error = _message(exc)
        log.warning("job %s: the model export failed: %s", job_id, error)
        with_db_retry(factory, lambda s: repo.save_failure(s, job_id, attempt, error))
        return False
    with_db_retry(
        factory,
        lambda s: repo.save_export(
            s, job_id, attempt, bundle=bundle.zip, onnx=bundle.onnx, metadata=bundle.metadata
        ),
    )
    log.info("job %s: model exported (%d bytes of ONNX)", job_id, len(bundle.onnx))
    return True


def _message(exc: Exception) -> str:
    if isinstance(exc, ExportError | TrainError):
        return f"The model export failed: {exc}"
    return f"The model export failed: internal error {type(exc).__name__}: {exc}"


def _final_weights(session: Session, job_id: str) -> bytes:
    ckpt = ckpt_repo.latest_checkpoint(session, job_id)
    if ckpt is None:
        raise ExportError("the job has no checkpoint to export the weights from")
    return ckpt_repo.read_file(session, ckpt.id, "weights")


def _context(
    session: Session,
    job_id: str,
    spec: JobSpec,
    ds: LoadedDataset,
    final_metrics: dict[str, float],
) -> ExportContext:
    source = spec.dataset.source
    info = ds.info
    if isinstance(source, BuiltinSource):
        names, columns = builtin_names(source, info)
        layout: Layout = "NF"
        if info.image_shape is not None:
            layout = "NHW" if info.image_shape[0] == 1 else "NCHW"
        return ExportContext(
            job_id, names, columns, InputFormat(layout, "float32"), False,
            final_metrics=final_metrics,
        )  # fmt: skip
    job = session.get(Job, job_id)
    assert job is not None
    stored = datasets_repo.get_dataset(session, source.dataset_id, job.team_id)
    if stored is None:
        raise ExportError(f"dataset {source.dataset_id!r} no longer exists")
    meta: dict[str, Any] = dict(stored.info)
    classes: list[str] | None = [str(c) for c in meta.get("class_names") or []] or None
    features: list[Any] | None = meta.get("feature_names")
    if info.modality == "text":
        assert isinstance(spec.model, TextModel | GraphModel | TransformerModel)
        decoded = codec.decode(datasets_repo.read_content(session, stored))
        texts = decoded.texts or []
        _, vocab = text_vocabulary(spec, spec.model, texts, np.asarray(ds.y), info)
        return ExportContext(
            job_id, classes, None, InputFormat("NL", "int64"), False, vocab, final_metrics
        )
    impute = (stored.options or {}).get("impute") == "mean"
    dtype = "uint8" if meta.get("x_dtype") == "uint8" or stored.format == "image_zip" else "float32"
    fmt_layout: Layout = "NF"
    if info.image_shape is not None:
        default = "NHWC" if stored.format == "image_zip" else "NCHW"
        fmt_layout = cast(Layout, meta.get("input_layout") or default)
    return ExportContext(
        job_id,
        classes,
        [str(f) for f in features] if features else None,
        InputFormat(fmt_layout, "uint8" if dtype == "uint8" else "float32"),
        impute,
        None,
        final_metrics,
    )
