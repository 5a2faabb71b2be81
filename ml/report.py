"""The classification report of a trained model on the job's validation split.

A confusion matrix (rows: true class, columns: predicted class, in class order, as
scikit-learn's ``confusion_matrix``) and per-class precision, recall, F1 and support
(scikit-learn's ``precision_recall_fscore_support(average=None)``, 0 on a zero
denominator), from the same split the engine validated on (same seed, same
stratified split, training-split normalization) and the same metric code
(``ml.metrics``), so the report agrees with the logged ``val_`` series of that
checkpoint's epoch.
"""

from __future__ import annotations

from typing import Any

import torch

from ml.data import LoadedDataset, eval_batches, prepare
from ml.export import model_from_weights
from ml.metrics import confusion_matrix, per_class_scores
from ml.spec import JobSpec

CPU = torch.device("cpu")
_EVAL_BATCH = 1024


def has_report(spec: JobSpec, ds: LoadedDataset) -> bool:
    """Only a classification with a validation split gets a report."""
    return ds.info.task == "classification" and spec.dataset.validation_split > 0


@torch.no_grad()
def classification_report(
    spec: JobSpec, ds: LoadedDataset, weights: bytes, classes: list[str] | None = None
) -> dict[str, Any]:
    """The report of the model with ``weights`` (a checkpoint's safetensors file)."""
    data = prepare(spec, ds, CPU)
    if data.x_val is None or data.y_val is None or ds.info.task != "classification":
        raise ValueError("a report needs a classification with a validation split")
    model = model_from_weights(spec, ds.info, weights)
    k = ds.info.n_classes
    cm = torch.zeros(k, k, dtype=torch.int64)
    for xb, yb in eval_batches(data.x_val, data.y_val, _EVAL_BATCH, CPU):
        cm += confusion_matrix(model(xb).argmax(1), yb, k)
    scores = per_class_scores(cm)
    names = classes if classes is not None and len(classes) == k else [str(i) for i in range(k)]
    per_class = [
        {
            "class": names[i],
            "precision": float(scores["precision"][i]),
            "recall": float(scores["recall"][i]),
            "f1": float(scores["f1"][i]),
            "support": int(scores["support"][i]),
        }
        for i in range(k)
    ]
    n = int(cm.sum())
    return {
        "classes": names,
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
        "accuracy": float(cm.diagonal().sum()) / n if n else 0.0,
        "n_samples": n,
    }
