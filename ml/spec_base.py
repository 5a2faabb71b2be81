"""Behaviour every spec model shares, kept apart from the fields in ``ml.spec``.

- "did you mean `epochs`?" for an unknown field one edit away (``SuggestFields``);
- ``true``/``false`` where a number is expected is an error at that field
  (``NoBoolNumbers``): pydantic's lax mode would read them as 1 and 0, so
  ``epochs: true`` would train one epoch. Numbers written as strings stay accepted
  (PyYAML, YAML 1.1, reads ``lr: 1e-3`` as the string "1e-3");
- the resolved spec of a builtin dataset leaves out the ``synthetic`` options unless
  the name is ``synthetic`` (``OmitsUnusedSynthetic``): they are never read, and shown
  they read as if e.g. digits were a 2-class problem.

Pydantic says only "Extra inputs are not permitted" for an unknown key; a
misspelt field (``epoch``, ``bacth_size``) deserves the name the user meant.
``suggest_fields`` rewrites those errors of one model (its own keys, not its
children's, which their own models have already rewritten), keeping the type
``extra_forbidden`` and the location, so API clients see the same problem with a
better message. Pydantic only: ``ml.spec`` imports this and must not import torch.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Union

from pydantic import (
    BaseModel,
    ModelWrapValidatorHandler,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

_MESSAGE = "Extra inputs are not permitted; did you mean `{suggestion}`?"


def one_edit_apart(a: str, b: str) -> bool:
    """Whether b is a with one character inserted, deleted, replaced, or two adjacent
    characters swapped (Damerau–Levenshtein distance 1)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def closest_field(name: str, known: Iterable[str]) -> str | None:
    """The known field one edit away from ``name`` (case-insensitively), if exactly one is."""
    lowered = name.lower()
    hits = [k for k in known if k.lower() == lowered or one_edit_apart(lowered, k.lower())]
    return hits[0] if len(hits) == 1 else None


def _kept(err: ErrorDetails) -> InitErrorDetails:
    """One of pydantic's reported errors, as it was, to raise again among others."""
    detail = PydanticCustomError(err["type"], err["msg"], err.get("ctx"))
    return {"type": detail, "loc": err["loc"], "input": err["input"]}


def suggest_fields(exc: ValidationError, known: Iterable[str]) -> ValidationError | None:
    """``exc`` with each of this model's unknown-key errors carrying a suggestion, or None
    when there is nothing to suggest."""
    known = list(known)
    errors: list[InitErrorDetails] = []
    changed = False
    for err in exc.errors():
        loc = err["loc"]
        hint = None
        if err["type"] == "extra_forbidden" and len(loc) == 1 and isinstance(loc[0], str):
            hint = closest_field(loc[0], known)
        if hint is not None:
            changed = True
            detail = PydanticCustomError("extra_forbidden", _MESSAGE, {"suggestion": hint})
            errors.append({"type": detail, "loc": loc, "input": err["input"]})
        else:
            errors.append(_kept(err))
    if not changed:
        return None
    return ValidationError.from_exception_data(exc.title, errors)


class SuggestFields(BaseModel):
    """A base model whose unknown-key errors suggest the known field one edit away."""

    @model_validator(mode="wrap")
    @classmethod
    def _suggest_unknown_fields(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            hinted = suggest_fields(exc, cls.model_fields)
            if hinted is None:
                raise
            raise hinted from None


class OmitsUnusedSynthetic(BaseModel):
    """For the builtin source: its dump has no ``synthetic`` key unless ``name`` is
    ``synthetic`` (validation fills the default back in, so nothing is lost)."""

    # No return annotation on purpose: pydantic then keeps the model's own schema for
    # the serialized form (an annotation would replace it in the OpenAPI document).
    @model_serializer(mode="wrap")
    def _omit_unused_synthetic(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if isinstance(data, dict) and getattr(self, "name", None) != "synthetic":
            data.pop("synthetic", None)
        return data


_BOOL_MESSAGE = "Input should be a number, not true or false"


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type takes a boolean anywhere (``bool``, ``bool | None``, ...)."""
    if annotation is bool or annotation is Any:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _admits_bool(args[0])
    if origin is typing.Literal:
        return any(isinstance(a, bool) for a in args)
    if origin in (Union, types.UnionType, list, tuple):
        return any(_admits_bool(a) for a in args if a is not Ellipsis)
    return origin is dict  # a free-form mapping: not a number


@functools.cache
def _number_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of a spec model that take no boolean (worked out once per model)."""
    return frozenset(n for n, f in model.model_fields.items() if not _admits_bool(f.annotation))


def _bools(value: Any, loc: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """Where ``value`` (a field's input, or a list of them) holds a boolean."""
    if isinstance(value, bool):
        return [loc]
    if isinstance(value, list | tuple):
        return [hit for i, item in enumerate(value) for hit in _bools(item, (*loc, i))]
    return []


class NoBoolNumbers(BaseModel):
    """``true``/``false`` in a field that takes no boolean is an error at its location."""

    @model_validator(mode="wrap")
    @classmethod
    def _refuse_bool_numbers(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        hits = [
            hit
            for name in _number_fields(cls)
            if name in data
            for hit in _bools(data[name], (name,))
        ]
        if not hits:
            return handler(data)
        errors: list[InitErrorDetails] = [
            {
                "type": PydanticCustomError("bool_not_number", _BOOL_MESSAGE),
                "loc": hit,
                "input": True,
            }
            for hit in hits
        ]
        try:
            handler(data)
        except ValidationError as exc:  # the other problems of this model, still all listed
            fields = {hit[0] for hit in hits}
            errors += [
                _kept(err) for err in exc.errors() if not err["loc"] or err["loc"][0] not in fields
            ]
        raise ValidationError.from_exception_data(cls.__name__, errors)


def _takes_only_bools(annotation: Any) -> bool:
    """``bool`` or ``bool | None``: a field whose schema says boolean."""
    if annotation is bool:
        return True
    args = typing.get_args(annotation)
    is_union = typing.get_origin(annotation) in (Union, types.UnionType)
    return is_union and bool(args) and all(a in (bool, type(None)) for a in args)


@functools.cache
def _bool_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(n for n, f in model.model_fields.items() if _takes_only_bools(f.annotation))


class StrictBools(BaseModel):
    """A boolean field takes ``true`` or ``false`` only, as the schema says (issue 28, 4):
    not ``1``, ``"yes"`` or ``"on"``, which lax pydantic would read as booleans."""

    @model_validator(mode="wrap")
    @classmethod
    def _only_booleans(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        hits = [
            name
            for name in _bool_fields(cls)
            if name in data and data[name] is not None and not isinstance(data[name], bool)
        ]
        if not hits:
            return handler(data)
        errors: list[InitErrorDetails] = [
            {
                "type": PydanticCustomError("bool_type", "Input should be true or false"),
                "loc": (name,),
                "input": data[name],
            }
            for name in hits
        ]
        try:
            handler(data)
        except ValidationError as exc:  # the other problems of this model, still all listed
            errors += [_kept(e) for e in exc.errors() if not e["loc"] or e["loc"][0] not in hits]
        raise ValidationError.from_exception_data(cls.__name__, errors)
