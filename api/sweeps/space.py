"""The search space against the spec: paths, field types, substitution, every 422.

Torch-free and FastAPI-free (the worker builds trial specs with it). A
parameter path is a dotted path into the *resolved* base spec
(``optimizer.lr``; a number indexes a list: ``model.layers.3.filters``); setting a
path that ends in ``kind`` (``model.kind``) replaces that whole part with the new
kind's defaults, so a choice of model kinds never mixes one kind's fields with another's.
"""

from __future__ import annotations

import copy
import itertools
import json
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from api.sweeps.search import (
    ChoiceParameter,
    Distribution,
    GridParameter,
    IntUniformParameter,
    LogUniformParameter,
    UniformParameter,
)
from ml.checks import DatasetInfo, check_spec, is_monitorable_name, monitorable_metrics
from ml.metric_names import is_metric_name
from ml.spec import JobSpec

MAX_COMBINATIONS = 4096  # checked together; beyond, each parameter's values are checked alone
FieldKind = Literal["int", "float", "other"]


@dataclass(frozen=True)
class Problem:
    loc: str
    msg: str
    type: str


def param_loc(path: str, *rest: str | int) -> str:
    """``parameters["optimizer.lr"].low`` / ``parameters["model.kind"].values[1]``."""
    out = f"parameters[{json.dumps(path)}]"
    for part in rest:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _kinds_of(annotation: Any) -> set[type]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kinds_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds_of(a) for a in typing.get_args(annotation)))
    return {annotation} if isinstance(annotation, type) else {object}


def field_kind(spec: JobSpec, path: str) -> FieldKind | None:
    """The type of the field at ``path`` in the spec; None when there is no such field.

    A number in the path indexes a list: ``model.layers.3.filters`` is a graph layer's."""
    parent: Any = spec
    parts = path.split(".")
    entry: type[BaseModel] | None = None  # the value model of a dict field (dataset.columns)
    for name in parts[:-1]:
        if isinstance(parent, list) and name.isdigit():
            if int(name) >= len(parent):
                return None
            parent = parent[int(name)]
            continue
        if isinstance(parent, dict) and entry is not None:
            parent, entry = parent.get(name) or entry(), None  # a column the base leaves out
            continue
        if not isinstance(parent, BaseModel) or name not in type(parent).model_fields:
            return None
        entry = _dict_value_model(type(parent).model_fields[name].annotation)
        parent = getattr(parent, name)
    if not isinstance(parent, BaseModel) or parts[-1] not in type(parent).model_fields:
        return None
    kinds = _kinds_of(type(parent).model_fields[parts[-1]].annotation) - {type(None)}
    if kinds == {int}:
        return "int"
    if kinds and kinds <= {int, float}:
        return "float"
    return "other"


def _dict_value_model(annotation: Any) -> type[BaseModel] | None:
    """X of a ``dict[str, X]`` field whose values are spec models, else None."""
    if typing.get_origin(annotation) is not dict:
        return None
    value = typing.get_args(annotation)[1]
    return value if isinstance(value, type) and issubclass(value, BaseModel) else None


def substitute(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The base (resolved) spec document with each path set to its value (an entry of a
    map such as ``dataset.columns.city`` is created when the base has none)."""
    doc = copy.deepcopy(dict(base))
    for path, value in params.items():
        *parents, leaf = path.split(".")
        node: Any = doc
        for name in parents:
            node = node[int(name)] if isinstance(node, list) else node.setdefault(name, {})
        if leaf == "kind" and parents and node.get("kind") != value:
            node.clear()  # a new kind starts from its own defaults
        node[leaf] = copy.deepcopy(value)
    return doc


def trial_spec(base: Mapping[str, Any], params: Mapping[str, Any]) -> JobSpec:
    return JobSpec.model_validate(substitute(base, params))


def check_values(dist: Distribution) -> list[tuple[tuple[str | int, ...], Any]]:
    """(where in the distribution, value) for every value a check must see."""
    if isinstance(dist, ChoiceParameter | GridParameter):
        return [(("values", i), v) for i, v in enumerate(dist.values)]
    return [(("low",), dist.low), (("high",), dist.high)]


def grid_size(parameters: Mapping[str, Distribution]) -> int:
    size = 1
    for dist in parameters.values():
        size *= len(check_values(dist)) if isinstance(dist, ChoiceParameter | GridParameter) else 0
    return size


def grid_point(parameters: Mapping[str, Distribution], number: int) -> dict[str, Any]:
    """The ``number``-th combination (the last parameter varies fastest)."""
    point: dict[str, Any] = {}
    for path in reversed(list(parameters)):
        dist = parameters[path]
        assert isinstance(dist, ChoiceParameter | GridParameter)
        number, index = divmod(number, len(dist.values))
        point[path] = dist.values[index]
    return {path: point[path] for path in parameters}


def _shape(path: str, dist: Distribution, kind: FieldKind) -> list[Problem]:
    """The distribution itself, and whether it fits the field's type."""
    out: list[Problem] = []
    if isinstance(dist, ChoiceParameter | GridParameter):
        seen = [json.dumps(v, sort_keys=True) for v in dist.values]
        if len(set(seen)) != len(seen):
            out.append(
                Problem(param_loc(path, "values"), "values repeat a value", "duplicate_values")
            )
        return out
    if kind == "other":
        out.append(
            Problem(
                param_loc(path, "kind"),
                f"{path} is not a numeric field, so a "
                f"{dist.kind} range cannot search it: use a choice",
                "non_numeric_path",
            )
        )
        return out
    if kind == "int" and not isinstance(dist, IntUniformParameter):
        out.append(
            Problem(
                param_loc(path, "kind"),
                f"{path} is an integer field: use int_uniform (or a choice)",
                "integer_path",
            )
        )
    if dist.low > dist.high or (
        dist.low == dist.high and not isinstance(dist, IntUniformParameter)
    ):
        out.append(
            Problem(
                param_loc(path, "high"),
                f"high ({dist.high}) must be above low ({dist.low})",
                "empty_range",
            )
        )
    log = isinstance(dist, LogUniformParameter) or (
        isinstance(dist, IntUniformParameter) and dist.log
    )
    if log and dist.low <= 0:
        out.append(
            Problem(
                param_loc(path, "low"),
                f"a log-scale range needs low > 0, got {dist.low}",
                "log_range_not_positive",
            )
        )
    return out


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _field_problems(
    base: dict[str, Any], path: str, where: tuple[str | int, ...], value: Any
) -> list[Problem]:
    """The value alone in the base spec: the field's own bounds and type (pydantic)."""
    try:
        JobSpec.model_validate(substitute(base, {path: value}))
    except ValidationError as exc:
        return [
            Problem(
                param_loc(path, *where),
                f"{json.dumps(value)} is not a valid {path}: "
                f"{err['msg']} (at {_dotted(err['loc'])})",
                "invalid_value",
            )
            for err in exc.errors()[:3]
        ]
    except (KeyError, TypeError):
        return [Problem(param_loc(path), f"{path} cannot be set here", "unknown_path")]
    return []


def structural_problems(spec: JobSpec, parameters: Mapping[str, Distribution]) -> list[Problem]:
    """Unknown or non-numeric paths, bad ranges, values outside a field's bounds."""
    base = spec.model_dump(mode="json")
    out: list[Problem] = []
    for path, dist in parameters.items():
        kind = field_kind(spec, path)
        if kind is None:
            out.append(
                Problem(
                    param_loc(path),
                    f"{path!r} is not a field of this spec (a dotted "
                    "path such as optimizer.lr or model.hidden_units)",
                    "unknown_path",
                )
            )
            continue
        shape = _shape(path, dist, kind)
        out += shape
        if shape:
            continue
        for where, value in check_values(dist):
            out += _field_problems(base, path, where, value)
    return out


def _points(
    parameters: Mapping[str, Distribution],
) -> Iterator[tuple[dict[str, Any], dict[str, tuple[str | int, ...]]]]:
    """Every combination of check values, or (too many) each parameter's values alone."""
    axes = [[(path, where, v) for where, v in check_values(d)] for path, d in parameters.items()]
    total = 1
    for axis in axes:
        total *= len(axis)
    if total <= MAX_COMBINATIONS:
        for combo in itertools.product(*axes):
            yield {p: v for p, _, v in combo}, {p: w for p, w, _ in combo}
        return
    for axis in axes:
        for path, where, value in axis:
            yield {path: value}, {path: where}


def _cause(base: dict[str, Any], point: dict[str, Any], code: str, info: DatasetInfo) -> str | None:
    """The parameter whose value alone brings problem ``code`` into the base spec."""
    for path, value in point.items():
        try:
            alone = JobSpec.model_validate(substitute(base, {path: value}))
        except ValidationError:
            continue
        if any(p.type == code for p in check_spec(alone, info)):
            return path
    return None


def semantic_problems(
    spec: JobSpec,
    parameters: Mapping[str, Distribution],
    objective_metric: str,
    info_for: typing.Callable[[JobSpec], DatasetInfo],
) -> list[Problem]:
    """The job checks (ml.checks) and the objective on every grid point and range extreme."""
    base = spec.model_dump(mode="json")
    found: dict[tuple[str, str], Problem] = {}
    for point, wheres in _points(parameters):
        setting = ", ".join(f"{p}={json.dumps(v)}" for p, v in point.items())
        try:
            trial = JobSpec.model_validate(substitute(base, point))
        except ValidationError as exc:
            err = exc.errors()[0]
            path = next(iter(point))
            found.setdefault(
                (param_loc(path), "invalid_combination"),
                Problem(
                    param_loc(path),
                    f"with {setting} the spec is invalid: {err['msg']} (at {_dotted(err['loc'])})",
                    "invalid_combination",
                ),
            )
            continue
        info = info_for(trial)
        for p in check_spec(trial, info):
            spec_loc = ".".join(map(str, p.loc))
            owner = next(
                (q for q in point if spec_loc.startswith(q) or q.startswith(spec_loc)), None
            ) or _cause(base, point, p.type, info)
            loc = param_loc(owner, *wheres[owner]) if owner else f"spec.{spec_loc}"
            found.setdefault(
                (loc, p.type), Problem(loc, f"with {setting}: {spec_loc}: {p.msg}", p.type)
            )
        bad = objective_problem(objective_metric, trial, info, f" (with {setting})")
        if bad is not None:
            found.setdefault((bad.loc, bad.type), bad)
    return list(found.values())


def objective_problem(
    objective_metric: str, trial: JobSpec, info: DatasetInfo, setting: str = ""
) -> Problem | None:
    """Why a trial with this spec does not log the objective (None: it does)."""
    produced = monitorable_metrics(trial, info)
    if objective_metric in produced:
        return None
    wanted = objective_metric.removeprefix("val_")
    if not is_monitorable_name(objective_metric):
        why = "is not a metric a job logs"
    elif is_metric_name(wanted) and wanted not in trial.metrics:
        why = f"needs {wanted!r} in spec.metrics"
    else:
        why = "is not produced by this trial"
    msg = f"{objective_metric!r} {why}{setting}; trials log {', '.join(produced)}"
    return Problem("objective.metric", msg, "objective_not_produced")


# Parameters under these parts of a spec can change which metrics a trial logs.
_METRIC_PARTS = ("metrics", "dataset")


def base_objective_problems(
    spec: JobSpec, parameters: Mapping[str, Distribution], objective_metric: str, info: DatasetInfo
) -> list[Problem]:
    """The objective judged without the trials (while the search space itself is invalid, so
    that one 422 lists every problem): a name no job logs, or one the base spec does not log
    when no parameter can change the metrics."""
    if is_monitorable_name(objective_metric) and any(
        path.split(".")[0] in _METRIC_PARTS for path in parameters
    ):
        return []
    bad = objective_problem(objective_metric, spec, info)
    return [] if bad is None else [bad]


def as_distributions(raw: Mapping[str, Any]) -> dict[str, Distribution]:
    """Stored parameters back as distribution models."""
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Distribution] = TypeAdapter(Distribution)
    return {path: adapter.validate_python(d) for path, d in raw.items()}


__all__ = [
    "ChoiceParameter",
    "GridParameter",
    "IntUniformParameter",
    "LogUniformParameter",
    "Problem",
    "UniformParameter",
    "as_distributions",
    "field_kind",
    "grid_point",
    "grid_size",
    "param_loc",
    "semantic_problems",
    "structural_problems",
    "substitute",
    "trial_spec",
]
