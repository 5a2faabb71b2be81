"""Spec files (YAML or JSON, bare spec or ``{spec, name, priority}``) and ``--set`` overrides."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainforge.sdk.errors import InvalidInput

_WRAPPER_KEYS = {"spec", "name", "priority"}


@dataclass
class Submission:
    spec: dict[str, Any]
    name: str | None = None
    priority: int | None = None
    source: bytes = b""  # the file's bytes, for the Idempotency-Key
    overrides: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"spec": self.spec}
        if self.name is not None:
            out["name"] = self.name
        if self.priority is not None:
            out["priority"] = self.priority
        return out

    def idempotency_key(self, nonce: str = "") -> str:
        """Same file, overrides, name and priority: same key, so a re-run makes no second job."""
        digest = hashlib.sha256(self.source)
        for part in [*self.overrides, f"name={self.name}", f"priority={self.priority}", nonce]:
            digest.update(b"\0" + part.encode())
        return f"cli-{digest.hexdigest()[:40]}"


def load(path: Path) -> Submission:
    """Read a spec file: JSON or YAML (JSON is YAML), a bare spec or ``{spec, name, priority}``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path} is not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: expected a mapping (a job spec), got {_kind(data)}")
    if "spec" in data and set(data) <= _WRAPPER_KEYS:
        spec, name, priority = data["spec"], data.get("name"), data.get("priority")
        if not isinstance(spec, dict):
            raise InvalidInput(f"{path}: `spec` must be a mapping, got {_kind(spec)}")
        if name is not None and not isinstance(name, str):
            raise InvalidInput(f"{path}: `name` must be a string")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
            raise InvalidInput(f"{path}: `priority` must be an integer")
        return Submission(spec=spec, name=name, priority=priority, source=raw)
    return Submission(spec=data, source=raw)


def parse_set(expr: str) -> tuple[list[str | int], Any]:
    """``a.b=v``: the dotted path and the value read as YAML (``3e-4``, ``[64,32]``, ``true``)."""
    key, sep, text = expr.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidInput(f"--set {expr!r}: expected PATH=VALUE, e.g. optimizer.lr=3e-4")
    parts = key.split(".")
    if parts[0] == "spec" and len(parts) > 1:
        parts = parts[1:]  # `spec.optimizer.lr` and `optimizer.lr` say the same
    if any(not p for p in parts):
        raise InvalidInput(f"--set {expr!r}: empty segment in {key!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"--set {expr!r}: the value is not valid YAML: {exc}") from None
    if isinstance(value, str) and _looks_numeric(text.strip()):
        value = float(text.strip())
    path: list[str | int] = [int(p) if p.isdigit() else p for p in parts]
    return path, value


def _looks_numeric(text: str) -> bool:
    # PyYAML (YAML 1.1) reads `3e-4` and `1e3` as strings; users mean numbers.
    try:
        float(text)
    except ValueError:
        return False
    return text.lower() not in {"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}


def apply_set(spec: dict[str, Any], expr: str) -> None:
    path, value = parse_set(expr)
    apply_value(spec, path, value, f"--set {expr!r}")


def split_path(key: str) -> list[str | int]:
    """``"optimizer.lr"`` -> ``["optimizer", "lr"]`` (a leading ``spec.`` is dropped)."""
    parts = key.strip().split(".")
    if parts[0] == "spec" and len(parts) > 1:
        parts = parts[1:]
    if any(not p for p in parts):
        raise InvalidInput(f"set {key!r}: empty segment in the path")
    return [int(p) if p.isdigit() else p for p in parts]


def apply_value(spec: dict[str, Any], path: list[str | int], value: Any, expr: str) -> None:
    """Set the field at ``path`` (mappings made on the way); ``expr`` names it in errors."""
    node: Any = spec
    for i, part in enumerate(path[:-1]):
        where = ".".join(str(p) for p in path[: i + 1])
        if isinstance(node, dict):
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            raise InvalidInput(f"{expr}: {where} is not a mapping in the spec")
    last, where = path[-1], ".".join(str(p) for p in path[:-1]) or "the spec"
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise InvalidInput(f"{expr}: {where} is a list of {len(node)}; no item {last}")
    elif not isinstance(node, dict):
        raise InvalidInput(f"{expr}: {where} is not a mapping in the spec")
    node[last] = value


def apply_overrides(sub: Submission, sets: list[str]) -> None:
    for expr in sets:
        apply_set(sub.spec, expr)
    sub.overrides = list(sets)


def to_yaml(data: Any) -> str:
    # Round-trip through JSON: plain types only, key order kept.
    return yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False, default_flow_style=None)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def copy_plain(data: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a spec given as a dict (so ``set`` never changes the caller's)."""
    copied: dict[str, Any] = json.loads(json.dumps(data))
    return copied
