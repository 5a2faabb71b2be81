"""The committed openapi.json is what the app serves, and it follows the contract rules
that keep generated clients clean (DESIGN.md §3, README "Generated clients")."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from api.openapi_dump import build_app, render
from api.problems import PROBLEM_JSON
from ml.spec import SPEC_VERSION
from tests.conftest import REPO

OPENAPI = REPO / "openapi.json"
TAGS = {"jobs", "datasets", "specs", "admin", "system", "webhooks", "sweeps"}
SCHEMAS = "#/components/schemas/"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# The spec's variant parts: (component, property) -> every kind it must map.
SPEC_UNIONS = {
    ("DatasetSpec", "source"): {"builtin", "uploaded"},
    ("JobSpec", "model"): {"mlp", "cnn", "text", "graph", "resnet", "transformer"},
    ("JobSpec", "init"): {
        "framework_default",
        "random_uniform",
        "lecun_normal",
        "xavier_normal",
        "xavier_uniform",
        "he_normal",
        "he_uniform",
        "orthogonal",
    },
    ("JobSpec", "optimizer"): {"sgd", "adam", "adamw", "rmsprop", "adagrad"},
    ("JobSpec", "schedule"): {
        "constant",
        "step_decay",
        "multistep",
        "exponential",
        "cosine",
        "cosine_restarts",
        "one_cycle",
        "reduce_on_plateau",
    },
    ("JobSpec", "clipping"): {"global_norm", "norm", "value", "adaptive"},
}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return build_app()


@pytest.fixture(scope="module")
def doc(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def nodes(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema-ish dict in a document, with a readable location."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from nodes(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from nodes(value, f"{where}/{i}")


def test_committed_openapi_json_is_what_the_app_serves(doc: dict[str, Any]) -> None:
    expected = render(doc)
    committed = OPENAPI.read_text(encoding="utf-8") if OPENAPI.exists() else ""
    if committed != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "openapi.json (committed)",
                    "openapi.json (from the app)",
                    n=1,
                )
            )[:60]
        )
        pytest.fail(f"openapi.json is out of date: run `make openapi` and commit it.\n{diff}")


def test_served_document_is_the_same(app: FastAPI, doc: dict[str, Any]) -> None:
    served = TestClient(app).get("/openapi.json")  # no lifespan: nothing starts
    assert served.json() == json.loads(render(doc))


def test_operation_ids_are_function_names_unique_with_one_tag(
    app: FastAPI, doc: dict[str, Any]
) -> None:
    by_route = {}
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute) and ctx.include_in_schema:
            for method in ctx.methods or ():
                by_route[(ctx.path_format, method.lower())] = ctx.endpoint.__name__
    seen: dict[str, str] = {}
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        assert op["operationId"] == by_route[(path, method)], where
        assert op["operationId"] not in seen, f"{where} repeats {seen.get(op['operationId'])}"
        seen[op["operationId"]] = where
        assert len(op.get("tags", [])) == 1 and op["tags"][0] in TAGS, (where, op.get("tags"))
    assert {"create_job", "get_job", "get_job_spec_schema", "validate_job_spec"} <= set(seen)


def test_no_generated_or_split_schema_names(doc: dict[str, Any]) -> None:
    bad = [
        name
        for name in doc["components"]["schemas"]
        if name.endswith(("-Input", "-Output"))
        or name.startswith("Body_")
        or not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name)
    ]
    assert not bad, f"rename these models (named, PascalCase, one per model): {bad}"


def test_bodies_are_named_models_and_lists_are_pages(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for path, method, op in operations(doc):
        bodies = [("request", op.get("requestBody", {}).get("content", {}))] + [
            (status, response.get("content", {})) for status, response in op["responses"].items()
        ]
        for status, content in bodies:
            for media, body in content.items():
                where = f"{method.upper()} {path} {status} {media}"
                if "itemSchema" in body:  # a stream (SSE, JSON lines): its items are named
                    item = body["itemSchema"]
                    data = item.get("properties", {}).get("data", {}).get("contentSchema", item)
                    assert set(data) == {"$ref"}, f"{where}: stream items are not a named model"
                    continue
                schema = body.get("schema", {})
                if media.endswith("json") or media.startswith(("multipart/", "application/x-")):
                    assert set(schema) == {"$ref"}, (
                        f"{where}: the body is not a named model: {schema} (a file or a stream? "
                        "declare its media type, e.g. application/octet-stream)"
                    )
                    name = schema["$ref"].removeprefix(SCHEMAS)
                    assert schemas[name].get("type") == "object", f"{where}: not an object"
                    fields = set(schemas[name].get("properties", {}))
                    if "items" in fields and status != "request":  # a list: a page
                        assert "next_cursor" in fields, (
                            f"{where}: {name} lists `items` without `next_cursor`; "
                            "lists are pages (`items`, `next_cursor`)"
                        )
                else:  # a file or text: bytes or a string, never an inline object
                    assert schema.get("type") == "string", f"{where}: {schema}"


def test_no_anonymous_object_or_enum_schemas(doc: dict[str, Any]) -> None:
    for name, schema in doc["components"]["schemas"].items():
        for where, node in nodes(schema, name):
            if node is schema:
                continue
            if where.endswith("/properties"):  # a map of field names, not a schema
                continue
            assert "properties" not in node, f"{where}: inline object; make it a named model"
            assert "enum" not in node, f"{where}: inline enum; make it a named component"
    for path, method, op in operations(doc):
        for parameter in op.get("parameters", []):
            for where, node in nodes(parameter["schema"], f"{method} {path} {parameter['name']}"):
                assert "enum" not in node and "properties" not in node, where


def test_spec_variants_are_discriminated_on_kind_with_a_mapping(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for (component, field), kinds in SPEC_UNIONS.items():
        prop = schemas[component]["properties"][field]
        union = next(n for _, n in nodes(prop) if "oneOf" in n)
        discriminator = union.get("discriminator", {})
        assert discriminator.get("propertyName") == "kind", (component, field)
        mapping = discriminator.get("mapping", {})
        assert set(mapping) == kinds, (component, field, sorted(mapping))
        assert sorted(mapping.values()) == sorted(v["$ref"] for v in union["oneOf"])
        for kind, ref in mapping.items():
            variant = schemas[ref.removeprefix(SCHEMAS)]
            assert variant["properties"]["kind"]["const"] == kind, ref
            assert "kind" in variant["required"], f"{ref}: the tag must be required"
    # A graph's layers: a union on `op`, one named variant per op.
    layers = schemas["GraphModel"]["properties"]["layers"]["items"]
    assert layers["discriminator"]["propertyName"] == "op"
    for op, ref in layers["discriminator"]["mapping"].items():
        variant = schemas[ref.removeprefix(SCHEMAS)]
        assert variant["properties"]["op"]["const"] == op and "op" in variant["required"], ref
    assert {"dense", "conv2d", "lstm", "multi_head_attention"} <= set(
        layers["discriminator"]["mapping"]
    )
    # And every other oneOf in the document is discriminated too.
    for where, node in nodes(doc):
        if "oneOf" in node:
            assert node.get("discriminator", {}).get("mapping"), f"{where}: oneOf without mapping"


def _problem(response: dict[str, Any] | None) -> bool:
    schema = (response or {}).get("content", {}).get(PROBLEM_JSON, {}).get("schema")
    return schema == {"$ref": SCHEMAS + "Problem"}


def test_errors_are_declared_as_problems(doc: dict[str, Any]) -> None:
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        responses = op["responses"]
        if path.startswith("/v1/"):
            assert _problem(responses.get("401")), f"{where}: 401 not declared as a Problem"
        if op.get("parameters") or "requestBody" in op:
            assert _problem(responses.get("422")), f"{where}: 422 not declared as a Problem"
        for status, response in responses.items():
            if status.startswith("4"):
                assert _problem(response), f"{where}: {status} is not problem+json `Problem`"
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_every_v1_operation_answers_401_without_a_key(client: TestClient) -> None:
    """What the document declares is what the app does, for every /v1 route."""
    doc = client.app.openapi()  # type: ignore[attr-defined]
    client.headers.pop("Authorization")
    for path, method, _ in operations(doc):
        if path.startswith("/v1/"):
            url = re.sub(r"\{[^}]+\}", "x", path)
            r = client.request(method.upper(), url)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers["content-type"].startswith(PROBLEM_JSON)


def test_job_spec_schema_is_served_with_the_spec_version(client: TestClient) -> None:
    r = client.get("/v1/schemas/job-spec")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["spec_version"] == SPEC_VERSION
    schema = body["json_schema"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "JobSpec" and schema["required"] == ["dataset"]
    optimizer = schema["properties"]["optimizer"]
    assert optimizer["discriminator"]["propertyName"] == "kind"
    assert set(optimizer["discriminator"]["mapping"]) == SPEC_UNIONS[("JobSpec", "optimizer")]
