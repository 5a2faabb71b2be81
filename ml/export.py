"""PyTorch -> ONNX with the preprocessing inside the graph (the torch side of a model export).

The exported graph takes the data as the user holds it and gives what a user wants back:

- tabular rows: float32 (B, F) in the upload's feature-column order; NaN marks a
  missing value, filled with the training split's per-feature mean when the job
  imputed (``impute=mean`` upload); then the job's normalization (statistics of
  the training split, the same ones training used);
- images: uint8 or float32 pixels in the upload's layout (``NCHW``, ``NHWC`` or
  ``NHW`` for one channel), cast to float32, moved to NCHW and scaled per channel
  exactly as in training;
- text: int64 token ids (B, max_length): cleaning, tokenizing and the vocabulary
  travel in ``model.json`` (``ml.text`` is the reference implementation);
- output ``probabilities`` (B, K) (softmax of the logits, in ``class_names``
  order) for a classification, ``value`` (B,) for a regression.

:func:`check_parity` runs the graph with ONNX Runtime on the raw validation rows
and compares it with the PyTorch model on the rows as training prepared them
(``ml.data.prepare``): the export is only accepted where every output is within
``PARITY_ATOL + PARITY_RTOL * |PyTorch's output|`` -- ``numpy.testing.assert_allclose``'s
criterion, so the tolerance scales with the outputs (a regression's values may be large;
float32 kernels that order a sum differently differ by a few units in the last place).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from ml import sklearn_numbers
from ml.architecture import is_classification
from ml.checks import DatasetInfo
from ml.data import LoadedDataset, fit_normalization, imputation_means, prepare, split_indices
from ml.encoding_torch import TableEncoderModule
from ml.models import build_model
from ml.raw_onnx import OPSET as RAW_OPSET
from ml.raw_onnx import RAW_INPUT, raw_model
from ml.spec import BuiltinSource, JobSpec
from ml.table_export import columns_metadata, encoder_for, ignored_columns, statistics
from ml.text import ENGLISH_STOP_WORDS, OOV, PAD

log = logging.getLogger(__name__)

OPSET = 18
FORMAT_VERSION = 1
PARITY_ATOL = 1e-4  # absolute part: probabilities near 0
PARITY_RTOL = 1e-3  # relative part: outputs of any scale (docs: README "Model export")
PARITY_MAX_ROWS = 4096  # rows checked when a job has no validation split (training rows)
INPUT_NAME = "input"
Layout = Literal["NF", "NCHW", "NHWC", "NHW", "NL"]
InputDType = Literal["float32", "uint8", "int64"]


class ExportError(Exception):
    """The model could not be exported, or its export does not match PyTorch."""


@dataclass(frozen=True)
class InputFormat:
    """What the graph's input is: its layout and dtype (the batch axis is dynamic)."""

    layout: Layout
    dtype: InputDType

    def shape(self, ds: LoadedDataset, max_length: int | None) -> list[int | None]:
        if self.layout == "NL":
            return [None, int(max_length or 0)]
        if self.layout == "NF":
            return [None, int(ds.x.shape[1])]
        c, h, w = (int(s) for s in ds.x.shape[1:])
        dims = {"NCHW": [c, h, w], "NHWC": [h, w, c], "NHW": [h, w]}[self.layout]
        return [None, *dims]

    def to_layout(self, x_nchw: NDArray[Any]) -> NDArray[Any]:
        """Stored rows (N, C, H, W) or (N, F) -> this layout and dtype (the raw input)."""
        if self.layout == "NHWC":
            x_nchw = np.transpose(x_nchw, (0, 2, 3, 1))
        elif self.layout == "NHW":
            x_nchw = x_nchw[:, 0]
        return np.ascontiguousarray(x_nchw.astype(self.dtype))


@dataclass(frozen=True)
class Preprocessing:
    """Statistics of the training split, as ``ml.data.prepare`` computes them."""

    means: NDArray[np.float32] | None  # per stored element (F,) or (C, H, W); None = no imputing
    shift: NDArray[np.float32] | None  # broadcastable to (1, F) or (1, C, 1, 1)
    scale: NDArray[np.float32] | None


def fit_preprocessing(spec: JobSpec, ds: LoadedDataset, impute: bool) -> Preprocessing:
    """The imputation means and normalization statistics the job trained with."""
    if ds.info.modality == "text":
        return Preprocessing(None, None, None)
    train, _ = split_indices(ds, spec.dataset.validation_split, spec.seed)
    x = np.asarray(ds.x, dtype=np.float32)
    means = imputation_means(x, train) if impute else None
    if means is not None:
        x = np.where(np.isnan(x), means[None, ...], x).astype(np.float32)
    stats = fit_normalization(x[train], spec.dataset.preprocessing.normalization)
    if stats is None:
        return Preprocessing(means, None, None)
    return Preprocessing(means, stats[0].astype(np.float32), stats[1].astype(np.float32))


class ExportedModel(nn.Module):
    """Raw input -> (cast, layout, imputation, normalization) -> model -> probabilities/values."""

    def __init__(
        self,
        model: nn.Module,
        pre: Preprocessing,
        fmt: InputFormat,
        classification: bool,
        table: nn.Module | None = None,  # an uploaded table's encodings (ml.table_export)
    ) -> None:
        super().__init__()
        self.model, self.layout, self.classification = model, fmt.layout, classification
        self.table = table
        self.impute, self.normalize = pre.means is not None, pre.shift is not None
        self.means: Tensor
        self.shift: Tensor
        self.scale: Tensor
        self.register_buffer("means", _tensor(pre.means, leading=True))
        self.register_buffer("shift", _tensor(pre.shift))
        self.register_buffer("scale", _tensor(pre.scale))

    def forward(self, x: Tensor) -> Tensor:
        if self.layout != "NL":
            x = x.to(torch.float32)
            if self.layout == "NHWC":
                x = x.permute(0, 3, 1, 2)
            elif self.layout == "NHW":
                x = x.unsqueeze(1)
            if self.table is not None:
                x = self.table(x)
            if self.impute:
                x = torch.where(torch.isnan(x), self.means, x)
            if self.normalize:
                x = (x - self.shift) / self.scale
        out: Tensor = self.model(x)
        if self.classification:
            return torch.softmax(out.float(), dim=1)
        return out.float()[:, 0]


def _tensor(a: NDArray[np.float32] | None, leading: bool = False) -> Tensor:
    if a is None:
        return torch.zeros(0)
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return t.unsqueeze(0) if leading else t


@dataclass
class Bundle:
    """The export of one job: the graph, its metadata, and both as one zip."""

    onnx: bytes
    metadata: dict[str, Any]
    raw_onnx: bytes | None = None  # a typed table's string-input graph (ml.raw_onnx)
    zip: bytes = field(init=False)

    def __post_init__(self) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("model.onnx", self.onnx)
            if self.raw_onnx is not None:
                zf.writestr("model_raw.onnx", self.raw_onnx)
            zf.writestr("model.json", json.dumps(self.metadata, indent=2, allow_nan=False))
        self.zip = buf.getvalue()


EXPORTERS = ("torchscript", "dynamo")


def to_onnx(graph: ExportedModel, example: NDArray[Any], exporter: str) -> bytes:
    """The graph as ONNX bytes (opset ``OPSET``, dynamic batch) from one of torch's exporters.

    ``torchscript`` (``dynamo=False``) traces in ~20 ms; ``dynamo`` (torch 2.13's
    default, onnxscript) takes seconds per model. Both give exact graphs for every
    model Trainforge builds; :func:`export_model` tries them in ``EXPORTERS`` order and
    keeps the first that passes the parity check.
    """
    args = (torch.from_numpy(example),)
    out_name = "probabilities" if graph.classification else "value"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        if exporter == "dynamo":
            program = torch.onnx.export(
                graph,
                args,
                dynamo=True,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[out_name],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                optimize=True,
                verbose=False,
            )
            assert program is not None
            return bytes(program.model_proto.SerializeToString())
        buf = io.BytesIO()
        torch.onnx.export(
            graph,
            args,
            buf,  # type: ignore[arg-type]  # a file object works (the TorchScript exporter)
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[out_name],
            dynamic_axes={INPUT_NAME: {0: "batch"}, out_name: {0: "batch"}},
        )
        return buf.getvalue()


def run_onnx(onnx_bytes: bytes, x: NDArray[Any], batch: int = 1024) -> NDArray[np.float32]:
    import onnxruntime as ort  # the worker's export extra

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    parts = [session.run(None, {INPUT_NAME: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(parts).astype(np.float32)


@torch.no_grad()
def reference_outputs(model: nn.Module, x: Tensor, classification: bool) -> NDArray[np.float32]:
    """PyTorch's answer on rows as training prepared them (normalized, imputed)."""
    outs = []
    for i in range(0, int(x.shape[0]), 1024):
        logits = model(x[i : i + 1024]).float()
        outs.append(torch.softmax(logits, dim=1) if classification else logits[:, 0])
    return torch.cat(outs).cpu().numpy().astype(np.float32)


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    rows: int
    split: Literal["validation", "training"]


def check_parity(
    onnx_bytes: bytes,
    model: nn.Module,
    spec: JobSpec,
    ds: LoadedDataset,
    fmt: InputFormat,
    atol: float = PARITY_ATOL,
    rtol: float = PARITY_RTOL,
) -> Parity:
    """ONNX Runtime on the raw validation rows vs PyTorch on the prepared ones."""
    data = prepare(spec, ds, torch.device("cpu"))
    _, val = split_indices(ds, spec.dataset.validation_split, spec.seed)
    split: Literal["validation", "training"] = "validation"
    if data.x_val is not None:
        prepared, rows = data.x_val, val
    else:  # no validation split: the first training rows
        train, _ = split_indices(ds, spec.dataset.validation_split, spec.seed)
        prepared, rows, split = data.x_train[:PARITY_MAX_ROWS], train[:PARITY_MAX_ROWS], "training"
    expected = reference_outputs(model, prepared, is_classification(ds.info))
    raw = fmt.to_layout(np.asarray(ds.x)[rows])
    got = run_onnx(onnx_bytes, raw)
    if got.shape != expected.shape:
        raise ExportError(f"ONNX output shape {got.shape} != PyTorch's {expected.shape}")
    diff = float(np.max(np.abs(got.astype(np.float64) - expected))) if len(rows) else 0.0
    if not within_tolerance(got, expected, atol, rtol):
        raise ExportError(
            f"ONNX Runtime and PyTorch differ by up to {diff:.3g} on the {split} split "
            f"({len(rows)} rows; the limit is {atol:g} + {rtol:g} x |PyTorch's output|)"
        )
    return Parity(diff, len(rows), split)


def within_tolerance(
    got: NDArray[np.floating], expected: NDArray[np.floating], atol: float, rtol: float
) -> bool:
    """|got - expected| <= atol + rtol * |expected| everywhere, NaN never (assert_allclose)."""
    a, b = got.astype(np.float64), expected.astype(np.float64)
    return bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


def model_from_weights(
    spec: JobSpec, info: DatasetInfo, weights: bytes, model: nn.Module | None = None
) -> nn.Module:
    """The job's model with the weights of a checkpoint (its safetensors ``weights`` file);
    ``model``: the module to load them into (an encoded table's, ``ml.table_export``)."""
    from safetensors.torch import load as st_load

    model = model if model is not None else build_model(spec, info)
    model.load_state_dict(st_load(weights))
    return model.eval()


def builtin_names(source: BuiltinSource, info: DatasetInfo) -> tuple[list[str] | None, list[str]]:
    """(class names, feature names) of a builtin dataset, as scikit-learn names them."""
    if source.name == "synthetic":
        classes = [str(i) for i in range(info.n_classes)] if info.n_classes else None
        return classes, [f"x{i}" for i in range(info.n_features)]
    named = sklearn_numbers.class_names(source.name)
    if named is not None:  # scikit-learn's names, without importing it
        classes = named if info.task == "classification" else None
        return classes, sklearn_numbers.FEATURE_NAMES[source.name]
    from sklearn import datasets as skd

    loaders = {
        "digits": skd.load_digits,
        "iris": skd.load_iris,
        "wine": skd.load_wine,
        "breast_cancer": skd.load_breast_cancer,
        "diabetes": skd.load_diabetes,
    }
    bunch = loaders[source.name]()
    target = getattr(bunch, "target_names", None)
    classes = None
    if info.task == "classification" and target is not None:
        classes = [str(c) for c in target]
    features = [str(f) for f in getattr(bunch, "feature_names", [])]
    return classes, features or [f"x{i}" for i in range(info.n_features)]


@dataclass(frozen=True)
class ExportContext:
    """What the worker knows about the job besides its spec, weights and data."""

    job_id: str
    class_names: list[str] | None
    feature_names: list[str] | None
    fmt: InputFormat
    impute: bool
    vocabulary: dict[str, int] | None = None  # text: token -> id
    final_metrics: dict[str, float] = field(default_factory=dict)


def export_model(model: nn.Module, spec: JobSpec, ds: LoadedDataset, ctx: ExportContext) -> Bundle:
    """Export ``model`` (the job's final weights) with its preprocessing; check its parity."""
    model = copy.deepcopy(model).to("cpu").float().eval()
    model = model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    classification = is_classification(ds.info)
    encoder = encoder_for(spec, ds)
    table = None
    if encoder is not None:  # encodings, then normalization, inside the graph
        stats = statistics(spec, ds, encoder)
        pre = Preprocessing(None, *(stats if stats is not None else (None, None)))
        table = TableEncoderModule(encoder)
    else:
        pre = fit_preprocessing(spec, ds, ctx.impute)
    graph = ExportedModel(model, pre, ctx.fmt, classification, table).eval()
    n_example = min(len(ds.x), 2) if len(ds.x) >= 2 else 1
    example = ctx.fmt.to_layout(np.nan_to_num(np.asarray(ds.x[:n_example]), nan=0.0))
    if n_example == 1:
        example = np.concatenate([example, example])
    failures = []
    for exporter in EXPORTERS:
        try:
            onnx_bytes = to_onnx(graph, example, exporter)
        except Exception as exc:  # noqa: BLE001 -- the next exporter may take this graph
            failures.append(f"{exporter} exporter: torch.onnx.export failed: {exc}")
            continue
        try:
            parity = check_parity(onnx_bytes, model, spec, ds, ctx.fmt)
        except ExportError as exc:
            failures.append(f"{exporter} exporter: {exc}")
            continue
        meta = _metadata(spec, ds, ctx, classification, onnx_bytes, exporter, parity)
        raw = None
        if encoder is not None:
            meta["columns"] = columns_metadata(ds, encoder)
            meta["ignored_columns"] = ignored_columns(ds)
            meta["preprocessing"]["imputation"] = "per column (columns[].encoding)"
            meta["preprocessing"]["missing_value"] = "NaN"
            raw = raw_model(onnx_bytes, meta["columns"], INPUT_NAME)
            meta["raw_input"] = {
                "file": "model_raw.onnx", "name": RAW_INPUT, "dtype": "string",
                "shape": [None, len(meta["columns"])], "opset": RAW_OPSET,
            }  # fmt: skip
        return Bundle(onnx=onnx_bytes, metadata=meta, raw_onnx=raw)
    raise ExportError("; ".join(failures))


def _metadata(
    spec: JobSpec,
    ds: LoadedDataset,
    ctx: ExportContext,
    classification: bool,
    onnx_bytes: bytes,
    exporter: str,
    parity: Parity,
) -> dict[str, Any]:
    info = ds.info
    max_length = getattr(spec.model, "max_length", None) if info.modality == "text" else None
    text = None
    if info.modality == "text":
        vocab = ctx.vocabulary or {}
        tokens = ["", "[UNK]"] + [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
        cleaning = spec.dataset.preprocessing.text_cleaning
        text = {
            "cleaning": cleaning.model_dump(mode="json"),
            "punctuation_pattern": r"[^\w\s]+",
            "stop_words": sorted(ENGLISH_STOP_WORDS) if cleaning.remove_stop_words else [],
            "vocabulary": tokens,
            "pad_id": PAD,
            "oov_id": OOV,
            "max_length": max_length,
        }
    n_out = len(ctx.class_names or []) if classification else 1
    return {
        "format_version": FORMAT_VERSION,
        "job_id": ctx.job_id,
        "task": info.task,
        "modality": info.modality,
        "class_names": ctx.class_names if classification else None,
        "feature_names": ctx.feature_names,
        "input": {
            "name": INPUT_NAME,
            "dtype": ctx.fmt.dtype,
            "layout": ctx.fmt.layout,
            "shape": ctx.fmt.shape(ds, max_length),
        },
        "output": {
            "name": "probabilities" if classification else "value",
            "dtype": "float32",
            "shape": [None, n_out] if classification else [None],
        },
        "preprocessing": {
            "in_graph": info.modality != "text",
            "normalization": (
                "none" if info.modality == "text" else spec.dataset.preprocessing.normalization
            ),
            "imputation": "mean" if ctx.impute and info.modality != "text" else None,
            "missing_value": "NaN" if ctx.impute and info.modality != "text" else None,
        },
        "text": text,
        "spec": spec.model_dump(mode="json"),
        "metrics": {k: _json_float(v) for k, v in ctx.final_metrics.items()},
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "opset": OPSET,
        "exporter": exporter,
        "torch_version": torch.__version__.split("+")[0],
        "parity": {
            "max_abs_diff": parity.max_abs_diff,
            "rows": parity.rows,
            "split": parity.split,
            "atol": PARITY_ATOL,
            "rtol": PARITY_RTOL,
        },
    }


def _json_float(v: float) -> float | str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return float(v)
