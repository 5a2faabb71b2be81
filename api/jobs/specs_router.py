"""/v1/specs: validate a spec and see what it implies, without queueing anything."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep, SettingsDep
from api.jobs.schemas import (
    PlanLayer,
    SpecPlanRead,
    SpecValidateRequest,
    SpecValidation,
    WarmStartRead,
)
from api.jobs.spec_service import resolve_limits, validate_and_plan
from api.problems import Problem
from api.teams.auth import PrincipalDep
from ml.plan import describe
from ml.resources import estimate
from ml.spec import SPEC_VERSION

router = APIRouter(
    prefix="/v1/specs",
    tags=["specs"],
    responses={
        401: {"model": Problem, "description": "Missing or invalid API key."},
        422: {"model": Problem, "description": "Invalid spec; `errors` lists every problem."},
    },
)


@router.post("/validate", response_model=SpecValidation)
def validate_job_spec(
    body: SpecValidateRequest, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> SpecValidation:
    """The resolved spec plus parameter count, steps per epoch and LR per epoch."""
    checked = validate_and_plan(
        resolve_limits(body.spec, settings), session, principal.team_id, settings=settings
    )
    spec, info = checked.spec, checked.info
    plan = describe(spec, info)
    warm = checked.warm_start
    return SpecValidation(
        warm_start=WarmStartRead.model_validate(warm.as_json()) if warm is not None else None,
        spec=spec,
        spec_version=SPEC_VERSION,
        plan=SpecPlanRead(
            parameter_count=plan.parameter_count,
            train_samples=plan.train_samples,
            validation_samples=plan.validation_samples,
            steps_per_epoch=plan.steps_per_epoch,
            total_steps=plan.total_steps,
            lr_per_epoch=plan.lr_per_epoch,
            estimated_memory_bytes=estimate(spec, info).memory_bytes,
            layers=[
                PlanLayer(
                    index=la.index,
                    id=la.id,
                    op=la.op,
                    output_shape=list(la.output_shape),
                    parameter_count=la.parameter_count,
                )
                for la in plan.layers
            ],
        ),
    )
