"""Start a run from another run's weights: load by layer and shape, reset, freeze.

The engine half of ``spec.warm_start`` (issue 24): ``ml.train(spec, warm_start=WarmStart(...))``;
the worker reads the source checkpoint (``worker.warm_start``), the API checks the source
(``api.checkpoints.warm_start``). Layers are named by their ``plan.layers`` ids (``layers.<i>``, a
graph layer's own ``id``, ``head``), or by the built module's names (``1``, ``4`` ...).

- What loads is decided by ``ml.warm_start_plan.plan_load`` (the function the API plans
  with before the job is queued): a tensor loads when the source has one of the same name
  and shape; any other (a head with another class count, a layer that is new) keeps its
  fresh initialisation and is reported with the reason. Layers under ``reset`` are not
  loaded at all.
- With ``resume`` (``optimizer_state: true``) the run continues the source's: the
  engine restores the checkpoint as a resume does and trains on to ``spec.epochs``
  (counted from the source's start), so with the same spec it equals one
  uninterrupted run of that length.
- Frozen layers (``freeze``) get no gradient, no optimizer state and no weight decay,
  so their weights are bit-identical at the end; a frozen batch-normalization layer
  also stops updating its running statistics (it stays in inference mode, as Keras
  does for a ``BatchNormalization`` layer with ``trainable = False``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from ml.architecture import TrainError
from ml.graph_model import keep_in_inference_mode
from ml.sinks import CheckpointBlob
from ml.warm_start_plan import WarmStartPlan, plan_load, under


@dataclass(frozen=True)
class WarmStart:
    weights: Mapping[str, Tensor]  # the source checkpoint's state dict
    freeze: Sequence[str] = ()
    reset: Sequence[str] = ()
    # optimizer_state: the source checkpoint whole, to continue the source's run (its
    # optimizer state, schedule position, RNG and epoch count) up to this spec's epochs.
    resume: CheckpointBlob | None = None


def layer_aliases(model: nn.Module) -> dict[str, str]:
    """The layer ids of ``plan.layers`` (``layers.<i>``, a layer's own ``id``, ``head``) ->
    the names of the modules that hold them, for a model built from a layer graph ({}
    for any other model)."""
    for prefix, module in model.named_modules():
        names = getattr(module, "layer_modules", None)
        if isinstance(names, dict):
            return {k: f"{prefix}.{v}" if prefix else v for k, v in names.items()}
    return {}


def apply_warm_start(model: nn.Module, warm: WarmStart) -> WarmStartPlan:
    """Load, reset and freeze ``model`` in place (before its optimizer is built)."""
    aliases = layer_aliases(model)  # plan.layers ids -> module names
    freeze = [aliases.get(name, name) for name in warm.freeze]
    reset = [aliases.get(name, name) for name in warm.reset]
    layers = [name for name, _ in model.named_modules() if name]
    unknown = [
        given
        for given, name in zip((*warm.freeze, *warm.reset), (*freeze, *reset), strict=True)
        if name not in layers
    ]
    if unknown:
        known = ", ".join(aliases) if aliases else ", ".join(layers)
        raise TrainError(
            f"warm_start names layer(s) {', '.join(map(repr, unknown))} that this model does "
            f"not have; its layers are {known}"
        )
    state = model.state_dict()
    report = plan_load(
        {name: tuple(t.shape) for name, t in state.items()},
        [name for name, _ in model.named_parameters()],
        {name: tuple(t.shape) for name, t in warm.weights.items()},
        freeze=freeze,
        reset=reset,
        head=aliases.get("head"),
    )
    if not report.loaded:
        raise TrainError("warm_start: no tensor of the source checkpoint fits this model")
    model.load_state_dict({name: warm.weights[name] for name in report.loaded}, strict=False)
    for name, module in model.named_modules():
        if not name or not under(name, freeze):
            continue
        for param in module.parameters(recurse=False):
            param.requires_grad_(False)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            keep_in_inference_mode(module)
    return report
