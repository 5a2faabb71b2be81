"""Hypothesis strategies drawn from the spec's own JSON schema (``JobSpec.model_json_schema``).

Every value the schema allows can be drawn: each ``oneOf``/``anyOf`` branch, each enum
member, numbers across their bounds (boundaries included), optional fields present or
absent. ``SIZE_CAPS`` bounds the few fields that only make a model bigger, so that a
build stays a few milliseconds; validation (pydantic plus ``ml.checks``) still decides
what is accepted.
"""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import strategies as st

from ml.spec import JobSpec

SCHEMA: dict[str, Any] = JobSpec.model_json_schema()
DEFS: dict[str, Any] = SCHEMA["$defs"]

# Fields whose size only grows the model: capped so every build is cheap.
SIZE_CAPS = {
    "hidden_units": 32,
    "channels": 8,
    "embedding_dim": 16,
    "vocab_size": 64,
    "max_length": 16,
    "num_layers": 2,
    "milestones": 50,
    "steps": 1000,
}
LIST_CAP = 3


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    found: dict[str, Any] = DEFS[ref.rsplit("/", 1)[-1]]
    return found


def _number(node: dict[str, Any], integer: bool, cap: int | None) -> st.SearchStrategy[Any]:
    lo = node.get("minimum", node.get("exclusiveMinimum"))
    hi = node.get("maximum", node.get("exclusiveMaximum"))
    if integer:
        lo_i = None if lo is None else int(lo) + (1 if "exclusiveMinimum" in node else 0)
        hi_i = None if hi is None else int(hi) - (1 if "exclusiveMaximum" in node else 0)
        if cap is not None:
            hi_i = cap if hi_i is None else min(hi_i, cap)
        if lo_i is None:
            lo_i = -(10**6)
        if hi_i is None:
            hi_i = 10**6
        return st.integers(lo_i, hi_i)
    return st.floats(
        min_value=None if lo is None else float(lo),
        max_value=None if hi is None else float(hi),
        exclude_min="exclusiveMinimum" in node,
        exclude_max="exclusiveMaximum" in node,
        allow_nan=False,
        allow_infinity=False,
    )


def from_node(node: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    node = _resolve(node)
    for key in ("oneOf", "anyOf"):
        if key in node:
            return st.one_of([from_node(n, name) for n in node[key]])
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    cap = SIZE_CAPS.get(name)
    if kind == "object":
        return _object(node)
    if kind == "array":
        if "prefixItems" in node:
            return st.tuples(*(from_node(n, name) for n in node["prefixItems"])).map(list)
        lo = node.get("minItems", 0)
        hi = min(node.get("maxItems", LIST_CAP), max(lo, LIST_CAP))
        return st.lists(from_node(node.get("items", {}), name), min_size=lo, max_size=hi)
    if kind == "integer":
        return _number(node, True, cap)
    if kind == "number":
        return _number(node, False, cap)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        return st.text(max_size=8)
    raise AssertionError(f"no strategy for schema node {node!r}")  # a new schema construct


def _object(node: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    required = set(node.get("required", []))
    fields = {k: from_node(v, k) for k, v in node.get("properties", {}).items()}
    present = {k: s for k, s in fields.items() if k in required or k == "kind"}
    optional = {k: s for k, s in fields.items() if k not in present}
    return st.fixed_dictionaries(present, optional=optional)


@functools.cache
def spec_part(name: str) -> st.SearchStrategy[Any]:
    """A value for the top-level spec field ``name`` as its schema allows it. Built once per
    field: a strategy is immutable, and building the tree at every draw was most of a
    drawing test's time (test_spec_builds: ~25 s of its ~35)."""
    return from_node(SCHEMA["properties"][name], name)
