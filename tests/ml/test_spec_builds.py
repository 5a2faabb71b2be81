"""Every spec that validation accepts builds (issue 28, finding 1b).

Hypothesis draws optimizer, schedule (with warmup), clipping, model, init,
regularization, precision and loss from the spec's own JSON schema; what the
API would accept (pydantic, then ``ml.checks.check_spec``, then
``ml.resources.check_resources`` under small limits) must build: the data, the
model, its loss and optimizer, the learning-rate schedule, early stopping, and
one optimizer step with clipping. A library that refuses a validated spec
(torch.optim.SGD and nesterov without momentum was the audit's) fails here.
Text models are not drawn: they need an uploaded text dataset.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ml.checks import builtin_info, check_spec
from ml.data import load_dataset, n_batches, prepare
from ml.early_stopping import EarlyStopping
from ml.resources import ResourceLimits, check_resources
from ml.schedules import build_schedule
from ml.spec import BuiltinSource, JobSpec
from ml.trainer import Trainer
from tests.ml.spec_strategies import spec_part

CPU = torch.device("cpu")
LIMITS = ResourceLimits(
    max_parameters=200_000, max_job_memory_bytes=256 * 2**20, max_runtime_seconds=None
)


@st.composite
def job_specs(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(spec_part("model").filter(lambda m: m["kind"] != "text"))
    # a cnn needs images; an mlp takes any of them
    names = ["digits"] if model["kind"] == "cnn" else ["iris", "diabetes", "digits"]
    spec: dict[str, Any] = {
        "dataset": {
            "source": {"kind": "builtin", "name": draw(st.sampled_from(names))},
            "batch_size": draw(st.sampled_from([1, 7, 32, 4096])),
        },
        "model": model,
        "epochs": draw(st.integers(1, 20)),
        "optimizer": draw(spec_part("optimizer")),
        "schedule": draw(spec_part("schedule")),
    }
    for part in ("clipping", "init", "regularization", "loss"):
        if draw(st.booleans()):
            spec[part] = draw(spec_part(part))
    if draw(st.booleans()):
        spec["early_stopping"] = draw(spec_part("early_stopping"))
    precision = draw(st.sampled_from(["fp32", "bf16", "fp16"]))
    spec["resources"] = {"device": "cpu", "precision": precision}
    return spec


def _accepted(raw: dict[str, Any]) -> JobSpec | None:
    """The spec as the API would take it, or None where the API answers 422."""
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError:
        return None
    source = spec.dataset.source
    assert isinstance(source, BuiltinSource)
    info = builtin_info(source)
    if check_spec(spec, info) or check_resources(spec, info, LIMITS):
        return None
    return spec


@pytest.mark.slow  # a few hundred builds: ~20 s on one core
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(job_specs())
def test_every_accepted_spec_builds_and_takes_a_step(raw: dict[str, Any]) -> None:
    note(repr(raw))
    spec = _accepted(raw)
    assume(spec is not None)
    assert spec is not None
    torch.manual_seed(spec.seed)
    data = prepare(spec, load_dataset(spec), CPU)
    trainer = Trainer(spec, data, CPU)
    per_epoch = n_batches(data.n_train, spec.dataset.batch_size)
    schedule = build_schedule(spec, per_epoch)
    if spec.early_stopping is not None:
        EarlyStopping(spec.early_stopping)
    for epoch in (0, spec.epochs - 1):
        assert schedule.lr_at(epoch, 0) >= 0
    x, y = data.x_train[: spec.dataset.batch_size], data.y_train[: spec.dataset.batch_size]
    stats = trainer.step(x, y, schedule.lr_at(0, 0), True)
    assert stats.loss.shape == ()
