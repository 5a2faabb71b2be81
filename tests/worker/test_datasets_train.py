"""Jobs on uploaded datasets train through the worker's run_job (SQLite), one per format."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from api.datasets import codec
from api.datasets import repository as datasets_repo
from api.db.session import session_factory
from api.ledger import metrics as metrics_repo
from api.ledger.models import Job
from api.settings import Settings
from ml.checks import DatasetInfo
from ml.data import LoadedDataset, split_indices
from ml.models import build_model
from ml.spec import JobSpec, TextCleaning, TextModel
from ml.text import ENGLISH_STOP_WORDS, OOV, PAD, clean_text, text_parameter_count
from tests.api.test_datasets import digits_npz, image_zip, iris_csv, job_on, text_csv, uploaded
from worker.datasets import to_loaded
from worker.runner import run_job

# Small runs: one checkpoint at the end keeps the SQL writes out of the timings.
QUIET = {"every_n_epochs": 100, "keep_best": 0, "keep_last": 1}


def run(
    client: TestClient, settings: Settings, body: dict[str, Any]
) -> tuple[Job, dict[str, list[float]]]:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    run_job(job_id, settings)
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        series: dict[str, list[float]] = {}
        for p in metrics_repo.read_metrics(s, job_id, None, None):
            series.setdefault(p.name, []).append(p.value if p.value is not None else float("nan"))
    return job, series


def succeeded(job: Job) -> None:
    assert (job.status, job.status_reason, job.error) == ("succeeded", "completed", None)


def with_holes(data: bytes) -> bytes:
    """Every seventh row loses its second feature (an empty cell)."""
    lines = data.decode().splitlines()
    rows = [
        ",".join("" if (i % 7 == 0 and c == 1) else v for c, v in enumerate(line.split(",")))
        for i, line in enumerate(lines[1:])
    ]
    return "\n".join([lines[0], *rows]).encode()


@pytest.mark.parametrize("holes", [False, True], ids=["complete", "imputed"])
def test_iris_csv_trains(client: TestClient, settings: Settings, holes: bool) -> None:
    # With holes, impute=mean keeps them; the job fills them with its training means.
    data, opts = (with_holes(iris_csv()), {"impute": "mean"}) if holes else (iris_csv(), {})
    ds = uploaded(client, data, "csv", label_column="species", **opts)
    assert any("will be imputed" in n for n in ds["notes"]) == holes
    job, m = run(
        client, settings,
        job_on(ds["id"], 64, model={"kind": "mlp", "hidden_units": [16]}, epochs=20, seed=0,
               optimizer={"kind": "adam", "lr": 0.05}, checkpointing=QUIET),
    )  # fmt: skip
    succeeded(job)
    assert all(np.isfinite(m["loss"]))
    assert len(m["val_accuracy"]) == 20 and m["val_accuracy"][-1] >= 0.8


def test_mixed_type_csv_trains_with_encodings(client: TestClient, settings: Settings) -> None:
    from tests.api.test_dataset_columns import mixed_csv

    ds = uploaded(client, mixed_csv(n=90), "csv", impute="median")
    assert {c["name"]: c["type"] for c in ds["columns"]}["joined"] == "date"
    columns = {"city": {"encoding": "embedding", "embedding_dim": 2},
               "income": {"impute": "mean", "missing_indicator": True}}  # fmt: skip
    body = job_on(ds["id"], 16, model={"kind": "mlp", "hidden_units": [8]}, epochs=3, seed=0,
                  checkpointing=QUIET)  # fmt: skip
    body["spec"]["dataset"]["columns"] = columns
    job, m = run(client, settings, body)
    succeeded(job)
    assert all(np.isfinite(m["loss"])) and len(m["val_accuracy"]) == 3


@pytest.mark.parametrize("encoder", ["pooling", "transformer"])
def test_text_csv_trains(client: TestClient, settings: Settings, encoder: str) -> None:
    ds = uploaded(client, text_csv(), "text_csv", text_column="review", label_column="sentiment")
    model = {"kind": "text", "embedding_dim": 16, "encoder": encoder, "num_heads": 2,
             "max_length": 12, "vocab_size": 64}  # fmt: skip
    body = {"spec": {
        "dataset": {
            "source": {"kind": "uploaded", "dataset_id": ds["id"]}, "batch_size": 16,
            "preprocessing": {"text_cleaning": {"remove_stop_words": True}},
        },
        "model": model, "epochs": 12 if encoder == "pooling" else 4, "seed": 0,
        "optimizer": {"kind": "adam", "lr": 0.03},
        "checkpointing": QUIET,
    }}  # fmt: skip
    job, m = run(client, settings, body)
    succeeded(job)
    assert all(np.isfinite(m["loss"]))
    if encoder == "pooling":  # the sentiment words decide the label: easy to learn
        assert m["val_accuracy"][-1] >= 0.8, m["val_accuracy"]


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "graph", "max_length": 12, "vocab_size": 64, "layers": [
            {"op": "embedding", "output_dim": 16}, {"op": "lstm", "units": 8}]},
        {"kind": "transformer", "num_layers": 1, "num_heads": 2, "width": 16,
         "max_length": 12, "vocab_size": 64},
    ],
    ids=["graph-lstm", "transformer"],
)  # fmt: skip
def test_text_csv_trains_a_graph(client: TestClient, settings: Settings, model: dict) -> None:
    """The worker tokenizes a text upload for graph models too (their max_length and
    vocab_size), and the job succeeds."""
    ds = uploaded(client, text_csv(), "text_csv", text_column="review", label_column="sentiment")
    body = {"spec": {
        "dataset": {"source": {"kind": "uploaded", "dataset_id": ds["id"]}, "batch_size": 16},
        "model": model, "epochs": 2, "seed": 0, "checkpointing": QUIET,
    }}  # fmt: skip
    job, m = run(client, settings, body)
    succeeded(job)
    assert len(m["val_accuracy"]) == 2 and all(np.isfinite(m["loss"]))


def test_digits_npz_trains(client: TestClient, settings: Settings) -> None:
    ds = uploaded(client, digits_npz(n=400), "npz")
    job, m = run(
        client, settings,
        job_on(ds["id"], 64, model={"kind": "mlp", "hidden_units": [32]}, epochs=8, seed=0,
               optimizer={"kind": "adam", "lr": 0.01}, checkpointing=QUIET),
    )  # fmt: skip
    succeeded(job)
    assert m["val_accuracy"][-1] >= 0.8, m["val_accuracy"]


def test_image_zip_trains_with_augmentation(client: TestClient, settings: Settings) -> None:
    ds = uploaded(client, image_zip(per_class=10), "image_zip", color_mode="greyscale")
    job, m = run(
        client, settings,
        job_on(ds["id"], model={"kind": "cnn", "channels": [4], "normalization": "none"},
               augmentation={"horizontal_flip": True}, epochs=3, seed=0, checkpointing=QUIET),
    )  # fmt: skip
    succeeded(job)
    assert len(m["loss"]) == 3 and all(np.isfinite(m["loss"]))


def test_a_job_whose_dataset_is_gone_fails_with_a_message(
    client: TestClient, settings: Settings
) -> None:
    ds = uploaded(client, iris_csv(), "csv", label_column="species")
    r = client.post("/v1/jobs", json=job_on(ds["id"], epochs=1))
    job_id = r.json()["id"]
    with session_factory(settings.resolved_database_url)() as s:  # behind the API's back
        stored = s.get(datasets_repo.Dataset, ds["id"])
        assert stored is not None
        datasets_repo.delete_dataset(s, stored)
        s.commit()
    run_job(job_id, settings)
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.status == "failed" and job.error and "no longer exists" in job.error


# --------------------------------------------------------------------------- text pipeline


def test_the_vocabulary_comes_from_the_training_split_only() -> None:
    texts = [f"common word{i}" for i in range(20)]
    y = np.array([i % 2 for i in range(20)], dtype=np.int64)
    info = DatasetInfo("classification", "text", 20, 0, None, 2)
    spec = JobSpec.model_validate(
        {"dataset": {"source": {"kind": "uploaded", "dataset_id": "x"}, "validation_split": 0.25},
         "model": {"kind": "text", "max_length": 4, "vocab_size": 100}, "seed": 3}
    )  # fmt: skip
    loaded = to_loaded(spec, codec.Decoded(y=y, x=None, texts=texts), info)
    assert loaded.x.shape == (20, 4) and loaded.x.dtype == np.float32
    train, val = split_indices(LoadedDataset(np.empty((20, 0)), y, info), 0.25, 3)
    assert len(val) == 5
    for i in val:  # "wordN" of a validation row was never seen in training: out of vocabulary
        assert loaded.x[i].tolist() == [2, OOV, PAD, PAD]
    assert all(loaded.x[i][1] >= 3 for i in train)


def test_cleaning_follows_the_spec() -> None:
    text = "  The QUICK, brown fox -- isn't   here!  "
    assert clean_text(text, TextCleaning()) == "the quick brown fox isnt here"
    assert clean_text(text, TextCleaning(remove_stop_words=True)) == "quick brown fox isnt"
    raw = TextCleaning(lowercase=False, strip_punctuation=False, collapse_whitespace=False)
    assert clean_text(text, raw) == text
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as SKLEARN

    assert frozenset(SKLEARN) == ENGLISH_STOP_WORDS


@pytest.mark.parametrize("encoder", ["pooling", "transformer"])
def test_text_parameter_count_matches_the_model(encoder: str) -> None:
    # an even num_heads: PyTorch's inference fast path of the encoder (not taken for odd ones)
    spec = TextModel(embedding_dim=12, encoder=encoder, num_layers=2, num_heads=2,
                     max_length=7, vocab_size=50)  # fmt: skip
    info = DatasetInfo("classification", "text", 10, 0, None, 4)
    upload = {"source": {"kind": "uploaded", "dataset_id": "d"}}
    body = {"dataset": upload, "model": spec.model_dump(), "regularization": {"dropout": 0.1}}
    model = build_model(JobSpec.model_validate(body), info)
    assert sum(p.numel() for p in model.parameters()) == text_parameter_count(spec, 4)
    ids = torch.tensor([[5, 6, 0, 0, 0, 0, 0], [0] * 7], dtype=torch.float32)
    out = model.eval()(ids)  # a text of padding only too (attention would read nothing)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    with torch.no_grad():  # inference: PyTorch's fast path of the encoder
        assert torch.isfinite(model(ids)).all()
