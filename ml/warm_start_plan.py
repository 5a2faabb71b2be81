"""Which tensors a warm start loads, which keep their initialisation and why (torch-free).

One function for both sides: the API plans a job's warm start before it is queued (the
new model's tensors from ``ml.tensor_manifest``, the source's from its checkpoint's
safetensors header) and answers it at ``POST /v1/specs/validate`` and
``GET /v1/jobs/{id}``; the engine (``ml.warm_start``) loads by the plan it computes from
the built model and the loaded weights. Same names and shapes in, same answer out.

- A tensor loads when the source has one of the same name and shape.
- The output head is one piece: when any of its tensors differs in shape (another number
  of classes, or a regression head where the source had classes) the whole head keeps
  its initialisation.
- A tensor under a ``reset`` layer is not loaded at all; a parameter under a ``freeze``
  layer is frozen (no gradient, no weight decay).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Dims = tuple[int, ...]
SkipKind = Literal["not_in_source", "shape_mismatch", "head_reinitialised", "reset"]


@dataclass(frozen=True)
class Skip:
    kind: SkipKind
    message: str


@dataclass
class WarmStartPlan:
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, Skip] = field(default_factory=dict)  # every tensor not loaded, and why
    frozen: list[str] = field(default_factory=list)  # parameter names
    unused: list[str] = field(default_factory=list)  # source tensors this model has no place for

    @property
    def reset(self) -> list[str]:
        return [n for n, s in self.skipped.items() if s.kind == "reset"]

    @property
    def reinitialised(self) -> list[str]:
        """The tensors that keep their fresh initialisation (skipped or reset)."""
        return list(self.skipped)

    def summary(self) -> str:
        parts = [f"warm start: {len(self.loaded)} tensor(s) loaded"]
        kept = {n: s for n, s in self.skipped.items() if s.kind != "reset"}
        if kept:
            why = "; ".join(f"{n}: {s.message}" for n, s in kept.items())
            parts.append(f"{len(kept)} kept their initialisation ({why})")
        if self.reset:
            parts.append(f"{len(self.reset)} re-initialised by reset")
        if self.frozen:
            parts.append(f"{len(self.frozen)} parameter(s) frozen")
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "loaded": list(self.loaded),
            "skipped": [
                {"tensor": n, "reason": s.kind, "message": s.message}
                for n, s in self.skipped.items()
            ],
            "reinitialised": self.reinitialised,
            "frozen": list(self.frozen),
            "unused": list(self.unused),
        }


def under(name: str, layers: Sequence[str]) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in layers)


def _shape(dims: Dims) -> str:
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


def plan_load(
    target: Mapping[str, Dims],
    parameters: Sequence[str],
    source: Mapping[str, Dims],
    *,
    freeze: Sequence[str] = (),
    reset: Sequence[str] = (),
    head: str | None = None,
) -> WarmStartPlan:
    """The warm start of a model holding ``target`` (``state_dict`` name -> shape, in its
    order; ``parameters`` the names that are parameters, not buffers) from ``source``.
    ``freeze``, ``reset`` and ``head`` are module names (``ml.tensor_manifest.layer_modules``)."""
    plan = WarmStartPlan()
    head_names = [n for n in target if head is not None and under(n, [head])]
    head_differs = any(n in source and source[n] != target[n] for n in head_names)
    for name, dims in target.items():
        got = source.get(name)
        if under(name, reset):
            plan.skipped[name] = Skip("reset", "re-initialised: its layer is in warm_start.reset")
        elif name in head_names and head_differs:
            shapes = ", ".join(
                f"{n.rsplit('.', 1)[-1]} {_shape(source[n])} in the source, "
                f"{_shape(target[n])} here"
                for n in head_names
                if n in source and source[n] != target[n]
            )
            msg = f"the output head is re-initialised: the classes (or the task) differ ({shapes})"
            plan.skipped[name] = Skip("head_reinitialised", msg)
        elif got is None:
            plan.skipped[name] = Skip("not_in_source", "not in the source checkpoint")
        elif got != dims:
            msg = f"shape {_shape(got)} in the source, {_shape(dims)} here"
            plan.skipped[name] = Skip("shape_mismatch", msg)
        else:
            plan.loaded.append(name)
    plan.unused = [n for n in source if n not in target]
    plan.frozen = [n for n in parameters if under(n, freeze)]
    return plan
