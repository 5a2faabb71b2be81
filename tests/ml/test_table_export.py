"""A job on a mixed-type table exports its encodings inside the ONNX graph (issue 29).

ONNX Runtime on stored-form rows (category indices, days, NaN) equals the engine's own
path (``ml.encoding`` transform -> normalization -> the trained model) within the export
tolerance, on rows with categories unseen in training, categories the upload never had,
and missing cells of every type; the torch calendar equals numpy's on many dates.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from api.datasets import codec
from api.datasets.schemas import DatasetOptions
from api.datasets.table import parse_csv
from ml.data import LoadedDataset, prepare
from ml.encoding import TableColumns, date_parts
from ml.encoding_torch import date_parts as torch_date_parts
from ml.engine import train
from ml.export import PARITY_ATOL, ExportContext, InputFormat, export_model, model_from_weights
from ml.sinks import MemoryCheckpointSink
from ml.spec import JobSpec
from ml.table_export import table_model_for
from tests.api.test_dataset_columns import mixed_csv

pytestmark = pytest.mark.unit


def test_torch_calendar_equals_numpy() -> None:
    days = np.concatenate([np.arange(-800, 800, 1.0), np.arange(10_000, 60_000, 37.25)])
    np.testing.assert_allclose(
        torch_date_parts(torch.from_numpy(days)).numpy(), date_parts(days), atol=2e-6
    )


@pytest.mark.parametrize("encoding", ["one_hot", "ordinal", "embedding"])
def test_onnx_equals_engine_on_unseen_and_missing(encoding: str) -> None:
    parsed = parse_csv(mixed_csv(n=80), DatasetOptions(task="auto", label_column="label",
                                                      delimiter=",", impute="median"))  # fmt: skip
    info = codec.dataset_info(codec.metadata(parsed))
    table = TableColumns(parsed.columns or [], parsed.feature_names or [], "median")
    ds = LoadedDataset(parsed.x, parsed.labels.y, info, table)
    spec = JobSpec.model_validate({
        "dataset": {"source": {"kind": "uploaded", "dataset_id": "t"}, "batch_size": 16,
                    "preprocessing": {"normalization": "standard"},
                    "columns": {"city": {"encoding": encoding},
                                "income": {"missing_indicator": True}}},
        "model": {"kind": "mlp", "hidden_units": [8]}, "epochs": 2, "seed": 0,
    })  # fmt: skip
    sink = MemoryCheckpointSink()
    result = train(spec, checkpoints=sink, dataset=ds)
    blob = sink.load()
    assert blob is not None
    model = model_from_weights(spec, info, blob.weights, table_model_for(spec, ds))
    ctx = ExportContext("job", ["a", "b"], parsed.feature_names, InputFormat("NF", "float32"),
                        False, None, result.final_metrics)  # fmt: skip
    bundle = export_model(model, spec, ds, ctx)
    assert bundle.metadata["parity"]["max_abs_diff"] <= PARITY_ATOL
    cols = bundle.metadata["columns"]
    assert [c["name"] for c in cols] == parsed.feature_names
    assert cols[0]["categories"] == ["Lima", "Oslo", "Pune"] and cols[0]["type"] == "categorical"

    # Hostile rows: an index the upload never had (-1, 99), missing everything, old dates.
    rows = np.array(
        [[-1, 1, 14000, 0, 50.0], [99, 0, np.nan, 2, np.nan], [np.nan] * 5,
         [2, np.nan, -3000.5, np.nan, 1e4]], dtype=np.float32,
    )  # fmt: skip
    session = ort.InferenceSession(bundle.onnx, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": rows})[0]
    # The engine's path: prepare's encoder and statistics, applied to these rows.
    data = prepare(spec, ds, torch.device("cpu"))
    from ml.table_export import encoder_for, statistics

    enc = encoder_for(spec, ds)
    assert enc is not None
    stats = statistics(spec, ds, enc)
    assert stats is not None
    x = (enc.transform(rows) - stats[0]) / stats[1]
    assert x.shape[1] == data.x_train.shape[1]
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x.astype(np.float32))), 1).numpy()
    np.testing.assert_allclose(got, expected, atol=PARITY_ATOL, rtol=1e-5)


def test_the_raw_string_graph_equals_the_stored_one() -> None:
    """model_raw.onnx takes the cells as strings, as in the CSV (ONNX-ML LabelEncoder,
    StringSplit for dates) and answers what model.onnx answers on the stored form."""
    import io
    import zipfile

    parsed = parse_csv(mixed_csv(n=80), DatasetOptions(task="auto", label_column="label",
                                                      delimiter=",", impute="median"))  # fmt: skip
    info = codec.dataset_info(codec.metadata(parsed))
    table = TableColumns(parsed.columns or [], parsed.feature_names or [], "median")
    ds = LoadedDataset(parsed.x, parsed.labels.y, info, table)
    spec = JobSpec.model_validate({
        "dataset": {"source": {"kind": "uploaded", "dataset_id": "t"}, "batch_size": 16},
        "model": {"kind": "mlp", "hidden_units": [8]}, "epochs": 1, "seed": 0,
    })  # fmt: skip
    sink = MemoryCheckpointSink()
    result = train(spec, checkpoints=sink, dataset=ds)
    blob = sink.load()
    assert blob is not None
    model = model_from_weights(spec, info, blob.weights, table_model_for(spec, ds))
    ctx = ExportContext("job", ["a", "b"], parsed.feature_names, InputFormat("NF", "float32"),
                        False, None, result.final_metrics)  # fmt: skip
    bundle = export_model(model, spec, ds, ctx)
    with zipfile.ZipFile(io.BytesIO(bundle.zip)) as zf:
        raw = zf.read("model_raw.onnx")
    assert bundle.metadata["raw_input"]["name"] == "rows"
    rows = np.array(
        [["Oslo", "yes", "2014-05-17", "2", "51.5"], ["Rome", "No", "", "3", "NA"],
         ["", "n", "2030-01-01T10:00:00Z", "9", ""], ["Pune", "", "1969-12-31", "", "-7e1"]],
        dtype=object,
    )  # fmt: skip
    stored = np.array(
        [[1, 1, 16207, 1, 51.5], [-1, 0, np.nan, 2, np.nan], [np.nan, 0, 21915, -1, np.nan],
         [2, np.nan, -1, np.nan, -70]], dtype=np.float32,
    )  # fmt: skip
    got = ort.InferenceSession(raw, providers=["CPUExecutionProvider"]).run(None, {"rows": rows})
    want = ort.InferenceSession(bundle.onnx, providers=["CPUExecutionProvider"]).run(
        None, {"input": stored}
    )
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
