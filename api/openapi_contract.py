"""The OpenAPI contract: FastAPI's document made clean for generated clients.

``api.app`` serves it at ``/openapi.json``; ``make openapi`` dumps it
(``python -m api.openapi_dump > openapi.json``, a separate module so that this one never
imports the app: no import cycle) and ``tests/contract/test_openapi.py`` fails when the
committed file differs.

What FastAPI leaves out or names badly is fixed here once, for every router:

- every error a route can answer is declared as RFC 9457 ``application/problem+json``
  (``Problem``): 401 where the route needs an API key, 422 where it validates input
  (instead of FastAPI's ``HTTPValidationError``, which this API never sends),
  400/413/415 where it takes a JSON body (``api.guard``), 503 where it uses the database;
- inline enums (the spec's ``Literal`` fields) become named components: a module-level
  ``Literal`` alias in ``ml.spec`` or ``api.jobs.schemas`` names its enum, otherwise
  ``<Model><Field>``;
- a discriminated union's tag (``kind``) is required in each variant, as the server
  requires it (pydantic's variants default it, which would make it optional);
- FastAPI's ``Body_<operation>`` multipart bodies are renamed ``<Operation>Form``.
"""

from __future__ import annotations

import json
import re
import threading
import typing
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from api.deps import get_session
from api.jobs import schemas as api_schemas
from api.problems import PROBLEM_JSON, Problem
from api.teams.auth import require_principal
from ml import graph_spec as ml_graph_spec
from ml import spec as ml_spec

OPENAPI_TAGS: list[dict[str, Any]] = [
    {"name": "jobs", "description": "Submit training jobs, follow them, read their results."},
    {"name": "datasets", "description": "Upload and manage the team's datasets."},
    {"name": "specs", "description": "Validate job specs; the spec's JSON Schema."},
    {"name": "sweeps", "description": "Hyper-parameter sweeps whose trials are jobs."},
    {"name": "webhooks", "description": "Signed notifications of job and sweep events."},
    {"name": "admin", "description": "Teams and API keys."},
    {"name": "system", "description": "Liveness and readiness probes (no API key)."},
]

Document = dict[str, Any]

_SCHEMAS = "#/components/schemas/"
_JSON = "application/json"
_MULTIPART = "multipart/form-data"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_PROBLEMS = {
    400: "Malformed body: invalid JSON, or a malformed multipart form.",
    401: "Missing or invalid API key.",
    413: "Request body too large.",
    415: "The body's media type is not the one this operation takes.",
    422: "Invalid input; `errors` lists every problem with its location.",
    503: "The database is unreachable; retry after `Retry-After` seconds.",
}
# Keywords that stay beside a hoisted enum's $ref: they describe the field, not the enum.
_FIELD_KEYWORDS = ("default", "description", "deprecated", "examples")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMAS = ("additionalProperties", "items", "not")


_BUILDING = threading.Lock()  # built in a thread at start-up and on first use: once


def contract_openapi(app: FastAPI) -> Document:
    """The app's OpenAPI document, made client-clean once per FastAPI generation."""
    with _BUILDING:
        document = FastAPI.openapi(app)  # cached by FastAPI until the routes change
        if getattr(app.state, "contract_openapi", None) is not document:
            _name_form_bodies(document)
            _hoist_enums(document, _literal_names(ml_spec, ml_graph_spec, api_schemas))
            _require_discriminators(document)
            _declare_problems(document, app.routes)
            app.state.contract_openapi = document
        return document


# --------------------------------------------------------------------------- problems


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _SCHEMAS + name}


_EXTENDED_PROBLEMS = ("StorageProblem",)


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": _PROBLEMS[status],
        "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
    }


def _sub_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _sub_calls(sub)


def _validates_input(dependant: Dependant) -> bool:
    own = (
        dependant.path_params,
        dependant.query_params,
        dependant.header_params,
        dependant.cookie_params,
        dependant.body_params,
    )
    return any(own) or any(_validates_input(sub) for sub in dependant.dependencies)


def _is_problem(body: dict[str, Any], problem_ref: dict[str, str]) -> bool:
    """A Problem, or a problem with extension members (StorageProblem: a 507's figures)."""
    schema = body.get("schema")
    return schema == problem_ref or any(schema == _ref(n) for n in _EXTENDED_PROBLEMS)


def _declare_problems(document: Document, routes: list[Any]) -> None:
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    problem_ref = _ref("Problem")
    problem = Problem.model_json_schema(ref_template=_SCHEMAS + "{model}")
    for name, schema in {"Problem": problem, **problem.pop("$defs", {})}.items():
        schemas.setdefault(name, schema)
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        calls = set(_sub_calls(route.dependant))
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            responses: dict[str, Any] = operation["responses"]
            for status, response in responses.items():
                # An error is problem+json whatever the route's own media type (JSON, SSE, ...).
                content = response.get("content", {})
                if status[0] in "45":
                    for media in [m for m, b in content.items() if _is_problem(b, problem_ref)]:
                        content[PROBLEM_JSON] = content.pop(media)
            wanted = []
            if require_principal in calls:
                wanted.append(401)
            if _validates_input(route.dependant):
                wanted.append(422)
            body_media = operation.get("requestBody", {}).get("content", {})
            if _JSON in body_media or _MULTIPART in body_media:
                wanted += [400, 413, 415]
            if get_session in calls:
                wanted.append(503)
            for status_code in wanted:
                current = responses.get(str(status_code), {}).get("content", {}).get(_JSON, {})
                if str(status_code) not in responses or current.get("schema") == _ref(
                    "HTTPValidationError"
                ):
                    responses[str(status_code)] = _problem_response(status_code)
    text = json.dumps(document)
    for name in _FASTAPI_VALIDATION:
        if f'"{_SCHEMAS}{name}"' not in text:
            schemas.pop(name, None)


# --------------------------------------------------------------------------- names


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", name))


def _walk_refs(node: Any, rename: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in rename:
            node["$ref"] = rename[ref]
        for value in node.values():
            _walk_refs(value, rename)
    elif isinstance(node, list):
        for value in node:
            _walk_refs(value, rename)


def _name_form_bodies(document: Document) -> None:
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    rename: dict[str, str] = {}
    for name in [n for n in schemas if n.startswith("Body_")]:
        new = _pascal(name.removeprefix("Body_")) + "Form"
        if new in schemas:
            raise ValueError(f"cannot rename {name}: a schema {new} exists; name the form model")
        schemas[new] = schemas.pop(name)
        schemas[new]["title"] = new
        rename[_SCHEMAS + name] = _SCHEMAS + new
    if rename:
        _walk_refs(document, rename)


def _literal_names(*modules: ModuleType) -> dict[tuple[Any, ...], str]:
    names: dict[tuple[Any, ...], str] = {}
    for module in modules:
        for name, value in vars(module).items():
            if not name.startswith("_") and typing.get_origin(value) is Literal:
                names.setdefault(typing.get_args(value), name)
    return names


def _discriminated_unions(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "oneOf" in node and "discriminator" in node:
            yield node
        for value in node.values():
            yield from _discriminated_unions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _discriminated_unions(value)


def _require_discriminators(document: Document) -> None:
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for union in list(_discriminated_unions(document)):
        tag = union["discriminator"]["propertyName"]
        for ref in union["discriminator"].get("mapping", {}).values():
            variant = schemas[ref.removeprefix(_SCHEMAS)]
            if tag not in variant.get("required", []):
                variant["required"] = sorted([*variant.get("required", []), tag])


class _EnumHoister:
    def __init__(self, schemas: dict[str, Any], known: dict[tuple[Any, ...], str]) -> None:
        self.schemas, self.known = schemas, known

    def component(self, node: dict[str, Any], owner: str, field: str) -> str:
        values = list(node["enum"])
        name = self.known.get(tuple(values)) or owner + _pascal(field)
        schema: dict[str, Any] = {"enum": values, "title": name}
        if "type" in node:
            schema["type"] = node["type"]
        existing = self.schemas.setdefault(name, schema)
        if existing.get("enum") != values:
            raise ValueError(f"enum {owner}.{field} would be named {name}, which is taken")
        return _SCHEMAS + name

    def visit(self, node: Any, owner: str, field: str) -> None:
        if not isinstance(node, dict):
            return
        if "enum" in node:
            ref = self.component(node, owner, field)
            kept = {k: node[k] for k in _FIELD_KEYWORDS if k in node}
            node.clear()
            node.update({"$ref": ref, **kept})
            return
        for name, sub in node.get("properties", {}).items():
            self.visit(sub, owner, name)
        for key in _SUBSCHEMA_LISTS:
            for sub in node.get(key, []):
                self.visit(sub, owner, field)
        for key in _SUBSCHEMAS:
            self.visit(node.get(key), owner, field)


def _hoist_enums(document: Document, known: dict[tuple[Any, ...], str]) -> None:
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    hoister = _EnumHoister(schemas, known)
    for name, schema in list(schemas.items()):
        if "enum" not in schema:  # a named enum already (a StrEnum)
            hoister.visit(schema, name, "")
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            owner = _pascal(operation.get("operationId", ""))
            for parameter in operation.get("parameters", []):
                hoister.visit(parameter.get("schema"), owner, parameter["name"])
