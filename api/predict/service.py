"""The job's export: its state on the job, its files, and predictions with ONNX Runtime.

ONNX Runtime sessions are cached per process, least recently used first out,
keyed by (job, sha256 of the graph): a re-exported job (a retry) gets a new
session. At most ``Settings.predict_cache_size`` are kept.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from api.ledger.models import Job
from api.predict import repository as repo
from api.predict.instances import to_input, vocabulary_index
from api.predict.schemas import ClassPrediction, PredictResponse, ValuePrediction
from api.problems import ProblemError


def ready_export_or_409(session: Session, job: Job) -> repo.ModelExport:
    """The job's ready export, or a 409 that says why there is none."""
    row = repo.get_export(session, job.id)
    if row is not None and row.status == repo.READY:
        return row
    if row is not None:
        why = row.error or "its export failed"
    elif job.status in ("queued", "running"):
        why = f"the job is {job.status}: its model is exported when training ends"
    elif job.status == "failed":
        why = f"the job failed ({job.status_reason}) and a failed job is not exported"
    else:
        why = "the job ended before its first epoch completed: there is no trained model"
    raise ProblemError(409, "No exported model", f"Job {job.id!r} has no model to use: {why}.")


@dataclass
class LoadedModel:
    session: Any  # onnxruntime.InferenceSession
    metadata: dict[str, Any]
    vocab: dict[str, int] | None = None  # a text model's token -> id, built once


class SessionCache:
    """A bounded, thread-safe LRU of ONNX Runtime sessions."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, session: Session, row: repo.ModelExport) -> LoadedModel:
        key = (row.job_id, row.onnx_sha256 or "")
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        onnx = repo.read_file(session, row.job_id, "onnx")
        if hashlib.sha256(onnx).hexdigest() != row.onnx_sha256:
            raise ProblemError(500, "Corrupt model", f"The stored model of job {row.job_id!r} "
                               "does not match its checksum.")  # fmt: skip
        meta = dict(row.model_metadata or {})
        loaded = LoadedModel(_inference_session(onnx), meta, vocabulary_index(meta))
        with self._lock:
            self._items[key] = loaded
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return loaded


def _inference_session(onnx: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one request, one core: requests run side by side
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])


def predict(model: LoadedModel, instances: list[Any]) -> PredictResponse:
    meta = model.metadata
    batch = to_input(meta, instances, model.vocab)
    out = np.asarray(model.session.run(None, {meta["input"]["name"]: batch})[0])
    if meta["task"] == "regression":
        return PredictResponse(predictions=[ValuePrediction(value=float(v)) for v in out])
    names: list[str] = meta.get("class_names") or [str(i) for i in range(out.shape[1])]
    return PredictResponse(
        predictions=[
            ClassPrediction(
                label=names[int(np.argmax(row))],
                probabilities={n: float(p) for n, p in zip(names, row, strict=True)},
            )
            for row in out
        ]
    )


def stream_file(
    factory: sessionmaker[Session], job_id: str, kind: repo.FileKind
) -> Iterator[bytes]:
    """The file chunk by chunk, each read in its own short session: no pooled connection is
    held while the client is slow to take a chunk."""
    return repo.stream_file(factory, job_id, kind)
