"""Semantic checks of a spec against the data it names, before anything is queued."""

from __future__ import annotations

from ml.checks import DatasetInfo, SpecProblem, builtin_info, check_spec

from api.problems import FieldProblem, ProblemError
from ml.spec import BuiltinSource, JobSpec


def dataset_info(spec: JobSpec) -> DatasetInfo:
    source = spec.dataset.source
    if isinstance(source, BuiltinSource):
        return builtin_info(source)
    # Uploaded datasets arrive with the datasets issue; until then the id is unknown.
    raise ProblemError(
        422,
        "Invalid spec",
        "Unknown dataset id.",
        errors=[
            FieldProblem(
                loc="spec.dataset.source.dataset_id",
                msg=f"no dataset {source.dataset_id!r}",
                type="unknown_dataset",
            )
        ],
    )


def validate_spec(spec: JobSpec, prefix: str = "spec") -> DatasetInfo:
    """Raises a 422 listing every semantic problem, each with its location."""
    info = dataset_info(spec)
    problems: list[SpecProblem] = check_spec(spec, info)
    if problems:
        errors = [
            FieldProblem(loc=".".join([prefix, *map(str, p.loc)]), msg=p.msg, type=p.type)
            for p in problems
        ]
        detail = "; ".join(f"{e.loc}: {e.msg}" for e in errors[:5])
        raise ProblemError(422, "Invalid spec", detail, errors=errors)
    return info
