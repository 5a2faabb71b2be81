"""/v1/schemas: the job spec's JSON Schema, for editors and client-side validation."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter

from api.jobs.schemas import JobSpecSchemaRead
from api.teams.auth import PrincipalDep
from ml.spec import SPEC_VERSION, JobSpec

router = APIRouter(prefix="/v1/schemas", tags=["specs"])


@cache
def _job_spec_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **JobSpec.model_json_schema(mode="validation"),
    }


@router.get("/job-spec", response_model=JobSpecSchemaRead)
def get_job_spec_schema(principal: PrincipalDep) -> JobSpecSchemaRead:
    """The JSON Schema of the job spec that `POST /v1/jobs` accepts."""
    return JobSpecSchemaRead(spec_version=SPEC_VERSION, json_schema=_job_spec_schema())
