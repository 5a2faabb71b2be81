"""Every ```json block in docs/spec.md is a complete job that passes all validation.

Builtin datasets use their hard-coded facts; an uploaded dataset id used in
the docs must be listed in UPLOADS with the facts it stands for.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ml.checks import DatasetInfo, builtin_info, check_spec
from ml.plan import describe
from ml.spec import BuiltinSource, JobSpec

DOC = Path(__file__).resolve().parents[2] / "docs" / "spec.md"
BLOCK = re.compile(r"^```json\n(.*?)^```", re.DOTALL | re.MULTILINE)
UPLOADS = {"ds_reviews": DatasetInfo("classification", "text", 5000, 0, None, 2)}


def blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def info_for(spec: JobSpec) -> DatasetInfo:
    source = spec.dataset.source
    if isinstance(source, BuiltinSource):
        return builtin_info(source)
    return UPLOADS[source.dataset_id]


def test_the_doc_has_an_example_for_every_part():
    parsed = [json.loads(b) for b in blocks()]
    assert len(parsed) >= 20
    seen = {key for job in parsed for key in job}
    parts = {"dataset", "augmentation", "model", "init", "regularization", "optimizer",
             "schedule", "clipping", "early_stopping", "checkpointing", "loss", "metrics", "epochs",
             "seed", "deterministic", "resources", "limits", "retry"}  # fmt: skip
    assert parts <= seen
    kinds = {job["schedule"]["kind"] for job in parsed if "schedule" in job}
    assert kinds >= {"step_decay", "multistep", "cosine", "cosine_restarts", "one_cycle",
                     "reduce_on_plateau"}  # fmt: skip


@pytest.mark.parametrize("text", blocks())
def test_example_is_a_valid_job(text):
    spec = JobSpec.model_validate(json.loads(text))
    info = info_for(spec)
    assert check_spec(spec, info) == []
    plan = describe(spec, info)  # what POST /v1/specs/validate shows for it
    assert plan.parameter_count > 0 and plan.total_steps == spec.epochs * plan.steps_per_epoch
