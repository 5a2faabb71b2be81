"""Checkpoints as two safetensors files (never pickle): weights, and what a resume needs.

``weights``: the model's ``state_dict`` (parameters and buffers), what a user
downloads. ``resume``: tensors for the optimizer state (``optim.<param>.<key>``),
the RNG states (``rng.cpu``, and ``rng.cuda`` for the CUDA device the run trained
on: older checkpoints hold ``rng.cuda.<i>`` for every visible device) and, with
``restore_best_weights``, the best epoch's weights (``best.<name>``); plus one
JSON document in the safetensors metadata (key ``trainforge``) with everything
else: counters, the optimizer's param groups and non-tensor state, the
schedule's and early stopping's ``state_dict()``, the partial epoch's metric
sums, the grad scaler, and the device type it was saved on (``device``).

A checkpoint resumes on any device: the optimizer keeps the fused/foreach choice
made for the device it runs on now (not the saving device's), and a resume that
cannot continue the saved random stream (CPU to CUDA, or an older checkpoint from
a host with another GPU count) says so in ``notes``: the run goes on, but is not
bit-for-bit the uninterrupted one. The data order needs no state: an epoch's permutation
derives from (seed, epoch), and ``batch`` says where in it the run stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from safetensors.torch import load as st_load
from torch import Tensor, nn
from torch.optim import Optimizer

from ml.architecture import TrainError
from ml.monitor import decode_float, encode_float
from ml.safetensors_bytes import to_safetensors
from ml.sinks import CheckpointBlob

FORMAT = 1
_META_KEY = "trainforge"
# Param-group flags that choose the optimizer's kernels for a device: kept from the
# optimizer built for this run, never taken from the checkpoint.
_DEVICE_FLAGS = ("fused", "foreach", "capturable")


@dataclass
class RunState:
    """Where a run is, besides model and optimizer tensors (all JSON-able)."""

    epoch: int = 0  # index of the epoch in progress (or next to run)
    batch: int = 0  # batches of that epoch already done (0 at an epoch boundary)
    step: int = 0  # global optimizer steps done
    epochs_completed: int = 0
    schedule: dict[str, Any] = field(default_factory=dict)
    early_stopping: dict[str, Any] | None = None
    partial: dict[str, float] = field(default_factory=dict)  # the epoch's metric sums so far
    last_metrics: dict[str, float] = field(default_factory=dict)
    best_metrics: dict[str, float] | None = None
    finished: Literal["completed", "early_stopped", "pruned"] | None = None  # once the run is over
    stopped_epoch: int | None = None
    scaler: dict[str, Any] | None = None


def _floats_out(d: dict[str, float] | None) -> dict[str, Any] | None:
    return None if d is None else {k: encode_float(v) for k, v in d.items()}


def _floats_in(d: dict[str, Any] | None) -> dict[str, float] | None:
    if d is None:
        return None
    return {k: float(v) for k, v in ((k, decode_float(v)) for k, v in d.items()) if v is not None}


def save_weights(state_dict: dict[str, Tensor]) -> bytes:
    # Any device; each tensor's bytes are copied out as the file is written.
    return to_safetensors(state_dict, metadata={"format": "pt"})


def pack(
    model: nn.Module,
    optimizer: Optimizer,
    state: RunState,
    best_weights: dict[str, Tensor] | None = None,
) -> CheckpointBlob:
    tensors: dict[str, Tensor] = {}
    opt_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in opt_state["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    device = next(model.parameters()).device
    tensors["rng.cpu"] = torch.get_rng_state()
    if device.type == "cuda":  # the device this run draws from, whatever its index
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    for name, value in (best_weights or {}).items():
        tensors[f"best.{name}"] = value
    doc = asdict(state)
    for key in ("partial", "last_metrics", "best_metrics"):
        doc[key] = _floats_out(doc[key])
    meta = {
        "format": FORMAT,
        "device": device.type,
        "run": doc,
        "optimizer": {"param_groups": opt_state["param_groups"], "scalars": scalars},
    }
    resume = to_safetensors(tensors, metadata={_META_KEY: json.dumps(meta, allow_nan=False)})
    return CheckpointBlob(weights=save_weights(model.state_dict()), resume=resume)


def unpack(
    blob: CheckpointBlob,
    model: nn.Module,
    optimizer: Optimizer,
    notes: list[str] | None = None,
) -> tuple[RunState, dict[str, Tensor] | None]:
    """Load a checkpoint into ``model`` and ``optimizer``, restore the RNG states.

    Returns the run state and the best weights (if the checkpoint has them).
    Raises TrainError when the checkpoint does not fit this job's model. ``notes``
    receives what makes this resume inexact (a random stream that cannot continue).
    """
    weights = st_load(blob.weights)
    tensors = st_load(blob.resume)
    meta = _read_meta(blob.resume)
    if meta.get("format") != FORMAT:
        raise TrainError(f"checkpoint format {meta.get('format')!r} is not {FORMAT}")
    device = next(model.parameters()).device
    try:
        model.load_state_dict({k: v.to(device) for k, v in weights.items()})
    except RuntimeError as e:
        raise TrainError(f"the checkpoint does not fit this job's model: {e}") from e

    opt_meta = meta["optimizer"]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    opt_state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            param = params[int(idx)] if int(idx) < len(params) else None
            if param is not None and value.shape == param.shape:
                # safetensors stores row-major; a moment buffer must have its parameter's
                # layout (e.g. channels_last), or the update pairs up the wrong elements.
                value = torch.empty_like(param, dtype=value.dtype).copy_(value)
            opt_state.setdefault(int(idx), {})[key] = value
    for idx, entry in opt_meta["scalars"].items():
        opt_state.setdefault(int(idx), {}).update(entry)
    groups = opt_meta["param_groups"]
    for g in groups:  # JSON turned tuples into lists
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    # The kernels chosen for this device (a CPU checkpoint's foreach on a GPU worker would
    # break the fused step that GradScaler, set up at construction, expects).
    chosen = [{k: g[k] for k in _DEVICE_FLAGS if k in g} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise TrainError(f"the checkpoint's optimizer state does not fit this job: {e}") from e
    for group, flags in zip(optimizer.param_groups, chosen, strict=True):
        for key in _DEVICE_FLAGS:
            if key in flags:
                group[key] = flags[key]
            else:
                group.pop(key, None)

    torch.set_rng_state(tensors["rng.cpu"])
    restore_cuda_rng(tensors, device, meta.get("device"), notes if notes is not None else [])

    best = {
        k.removeprefix("best."): v.to(device) for k, v in tensors.items() if k.startswith("best.")
    }
    doc = meta["run"]
    if doc.get("finished") not in (None, "completed", "early_stopped", "pruned"):
        raise TrainError(f"the checkpoint says the run ended as {doc['finished']!r}")
    for key in ("partial", "last_metrics", "best_metrics"):
        doc[key] = _floats_in(doc[key])
    return RunState(**doc), (best or None)


def _cuda_index(name: str) -> int:
    return int(name.rsplit(".", 1)[1])


def restore_cuda_rng(
    tensors: dict[str, Tensor], device: torch.device, saved_on: str | None, notes: list[str]
) -> None:
    """Continue the saved CUDA random stream on ``device`` where the checkpoint has it;
    say in ``notes`` when the resumed run cannot be bit-for-bit the uninterrupted one."""
    if saved_on is not None and saved_on != device.type:
        notes.append(
            f"resumed on {device} from a checkpoint saved on {saved_on}: the run goes on, but "
            "its random stream (dropout, augmentation) and arithmetic differ from an "
            "uninterrupted run on one device, so the result is not bit-for-bit reproducible"
        )
        return
    if device.type != "cuda":
        return
    state = tensors.get("rng.cuda")
    if state is None:  # an older checkpoint: one state per device visible when it was saved
        legacy = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=_cuda_index)
        index = device.index if device.index is not None else torch.cuda.current_device()
        if len(legacy) == torch.cuda.device_count() and index < len(legacy):
            state = tensors[legacy[index]]
        else:
            notes.append(
                f"resumed on {device} from a checkpoint saved with {len(legacy)} GPU random "
                "state(s) for another set of GPUs: the CUDA random stream starts afresh, so "
                "the run is not bit-for-bit the uninterrupted one"
            )
            return
    torch.cuda.set_rng_state(state, device)


def _read_meta(data: bytes) -> dict[str, Any]:
    # safetensors layout: 8-byte little-endian header length, then the JSON header.
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    raw = header.get("__metadata__", {}).get(_META_KEY)
    if raw is None:
        raise TrainError("the checkpoint has no trainforge resume metadata")
    meta: dict[str, Any] = json.loads(raw)
    return meta
