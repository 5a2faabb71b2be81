"""Per-layer learning-rate multipliers (a graph layer's ``lr_multiplier``,
``spec.lr_multipliers`` by plan id): one optimizer step moves each layer by the reference
arithmetic -- SGD's ``w - lr · multiplier · grad``, with the lr the schedule gives."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from ml.checks import builtin_info, check_spec
from ml.data import load_dataset, prepare
from ml.spec import JobSpec
from ml.trainer import Trainer

CPU = torch.device("cpu")
IRIS = {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 32}
GRAPH = {"kind": "graph", "layers": [
    {"op": "dense", "units": 6, "id": "body", "lr_multiplier": 0.1},
    {"op": "activation", "fn": "tanh"}, {"op": "dense", "units": 5}]}  # fmt: skip


def one_step(body: dict[str, Any], lr: float) -> tuple[dict[str, torch.Tensor], ...]:
    """(weights before, gradients of the first batch, weights after one trainer step)."""
    spec = JobSpec.model_validate({"dataset": IRIS, "epochs": 1, **body})
    data = prepare(spec, load_dataset(spec), CPU)
    trainer = Trainer(spec, data, CPU)
    xb, yb = data.x_train[:32], data.y_train[:32]
    reference = copy.deepcopy(trainer.model)
    trainer.train_loss_fn(reference(xb).float(), yb).backward()
    grads = {n: p.grad.detach().clone() for n, p in reference.named_parameters()}  # type: ignore[union-attr]
    before = {n: p.detach().clone() for n, p in reference.named_parameters()}
    trainer.step(xb, yb, lr)
    after = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    return before, grads, after


@pytest.mark.parametrize("lr", [0.1, 0.025])  # the schedule's lr of the step, whatever it is
def test_a_layer_with_multiplier_0_1_moves_a_tenth_as_far(lr: float) -> None:
    sgd = {"kind": "sgd", "lr": 0.1}
    before, grads, after = one_step({"model": GRAPH, "optimizer": sgd}, lr)
    multiplier = {"0.weight": 0.1, "0.bias": 0.1}  # the body; layer 2 and the head: 1
    for name, w in before.items():
        expected = w - (lr * multiplier.get(name, 1.0)) * grads[name]
        torch.testing.assert_close(after[name], expected, rtol=1e-6, atol=1e-7)
        assert not torch.equal(after[name], w)


def test_spec_lr_multipliers_name_layers_of_any_kind_by_plan_id() -> None:
    mlp = {"kind": "mlp", "hidden_units": [6]}
    body = {"model": mlp, "optimizer": {"kind": "sgd", "lr": 0.1},
            "lr_multipliers": {"head": 0.5, "layers.1": 2.0}}  # fmt: skip
    before, grads, after = one_step(body, 0.1)
    scale = {"1": 2.0, "3": 0.5}  # mlp: 0 flatten, 1 dense, 2 activation, 3 the head
    for name, w in before.items():
        expected = w - 0.1 * scale[name.split(".")[0]] * grads[name]
        torch.testing.assert_close(after[name], expected, rtol=1e-6, atol=1e-7)


def test_multipliers_are_validated() -> None:
    bad = {**GRAPH, "layers": [{**GRAPH["layers"][0], "lr_multiplier": 0}, *GRAPH["layers"][1:]]}
    with pytest.raises(ValidationError, match="greater than 0"):
        JobSpec.model_validate({"dataset": IRIS, "model": bad})
    with pytest.raises(ValidationError, match="greater than 0"):
        JobSpec.model_validate({"dataset": IRIS, "lr_multipliers": {"head": -1}})
    spec = JobSpec.model_validate({"dataset": IRIS, "lr_multipliers": {"stem": 0.1}})
    problems = check_spec(spec, builtin_info(spec.dataset.source))  # type: ignore[arg-type]
    assert [(p.loc, p.type) for p in problems] == [(("lr_multipliers", "stem"), "unknown_layer")]
