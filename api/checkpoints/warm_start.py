"""The source of a spec's ``warm_start``: a finished job of the same team and its checkpoint,
and what the new model will load from it -- before anything is queued.

Used by the API's spec validation (``api.jobs.spec_service``). Another team's job (or no job)
is a 404 at ``spec.warm_start.job_id``, never a 403 and never a hint that it exists.

``best`` and ``latest`` are resolved here to the checkpoint's id, which the stored spec
keeps: the job pins that checkpoint (``api.checkpoints.warm_start_pins``) from its submit on.
The plan (which tensors load, which keep their initialisation and why) comes from
``ml.warm_start_plan.plan_load`` -- the function the engine loads with -- applied to
the new model's tensors (``ml.tensor_manifest``, torch-free) and the source
checkpoint's (its safetensors header).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from api.checkpoints.warm_start_source import source_checkpoint, weights_shapes
from api.problems import FieldProblem, ProblemError
from ml.architecture import output_units
from ml.dataset_info import DatasetInfo
from ml.spec import JobSpec, WarmStartSpec
from ml.tensor_manifest import HeaderError, graph_tensors, layer_modules, spec_graph
from ml.warm_start_plan import WarmStartPlan, plan_load

NOT_PLANNED = (
    "decided when the job starts: this table's typed columns size the model's inputs from "
    "its training split (the job's log says what loaded)"
)


@dataclass(frozen=True)
class PlannedWarmStart:
    source_job_id: str
    checkpoint_id: int
    plan: WarmStartPlan | None  # None: the model's inputs are known only at start

    def as_json(self) -> dict[str, Any]:
        base: dict[str, Any] = {"source_job_id": self.source_job_id,
                                "checkpoint_id": self.checkpoint_id}  # fmt: skip
        if self.plan is None:
            return base | {"planned": False, "summary": NOT_PLANNED}
        return base | {"planned": True, "summary": self.plan.summary(), **self.plan.as_json()}


def check_source(
    warm: WarmStartSpec | None, session: Session, team_id: str, prefix: str = "spec"
) -> list[FieldProblem]:
    """[] when the source exists and has the checkpoint; raises the 404 for no such job."""
    if warm is None:
        return []
    found = source_checkpoint(session, warm, team_id)
    if found == "no job":
        loc = f"{prefix}.warm_start.job_id"
        raise ProblemError(
            404,
            "Not found",
            f"No job {warm.job_id!r} to warm-start from.",
            errors=[FieldProblem(loc=loc, msg=f"no job {warm.job_id!r}", type="not_found")],
        )
    if isinstance(found, str):
        field = "job_id" if " is " in found else "checkpoint"
        return [
            FieldProblem(loc=f"{prefix}.warm_start.{field}", msg=found, type="warm_start_source")
        ]
    return []


def plan_warm_start(
    spec: JobSpec,
    info: DatasetInfo,
    session: Session,
    team_id: str,
    *,
    inputs_known: bool,
    prefix: str = "spec",
) -> tuple[JobSpec, PlannedWarmStart | None, list[FieldProblem]]:
    """The spec with its source checkpoint resolved to an id, the plan, and its 422s (a
    layer that does not exist, nothing that would load). Call after ``check_source``
    found no problem."""
    warm = spec.warm_start
    if warm is None:
        return spec, None, []
    found = source_checkpoint(session, warm, team_id)
    if isinstance(found, str):  # gone since check_source: said there
        return spec, None, []
    pinned = warm.model_copy(update={"checkpoint": found.id})
    resolved = spec.model_copy(update={"warm_start": pinned})
    graph = spec_graph(spec, info)
    target = graph_tensors(graph[0], info, output_units(info), graph[1]) if graph else None
    if not inputs_known or graph is None or target is None:
        return resolved, PlannedWarmStart(warm.job_id, found.id, None), []
    try:
        source = weights_shapes(session, found.id)
    except HeaderError as exc:
        loc = f"{prefix}.warm_start.checkpoint"
        msg = f"checkpoint {found.id}'s weights cannot be read: {exc}"
        return resolved, None, [FieldProblem(loc=loc, msg=msg, type="warm_start_source")]
    aliases = layer_modules(*graph)
    modules = set(graph[1]) | {
        n.rsplit(".", k)[0] for n in target for k in range(1, n.count(".") + 1)
    }
    problems: list[FieldProblem] = []
    named: dict[str, list[str]] = {}
    for field in ("freeze", "reset"):
        named[field] = []
        for i, name in enumerate(getattr(warm, field)):
            module = aliases.get(name, name)
            named[field].append(module)
            if module not in modules:
                msg = (f"this model has no layer {name!r}: name a layer of plan.layers "
                       f"(layers.0 … layers.{len(graph[0].layers) - 1}, head, its ids) "
                       "or a module of its tensors")  # fmt: skip
                loc = f"{prefix}.warm_start.{field}.{i}"
                problems.append(FieldProblem(loc=loc, msg=msg, type="warm_start_unknown_layer"))
    if problems:
        return resolved, None, problems
    plan = plan_load(
        {n: e.shape for n, e in target.items()},
        [n for n, e in target.items() if e.parameter],
        source,
        freeze=named["freeze"],
        reset=named["reset"],
        head=aliases["head"],
    )
    if not plan.loaded:
        why = "; ".join(f"{n}: {s.message}" for n, s in list(plan.skipped.items())[:3])
        msg = (f"no tensor of checkpoint {found.id} fits this model ({why}): warm-start "
               "from a job of the same architecture")  # fmt: skip
        loc = f"{prefix}.warm_start"
        return resolved, None, [FieldProblem(loc=loc, msg=msg, type="warm_start_nothing_loads")]
    return resolved, PlannedWarmStart(warm.job_id, found.id, plan), []
