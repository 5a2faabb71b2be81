"""A sweep's trials against the team's storage quota, at creation (issue 28).

A job is refused at submit when the checkpoints it keeps cannot fit what its team has left
(``api.storage.quota.checkpoint_room``); a sweep's trials are queued without that check, so
the sweep is checked as a whole when it is created, with the same arithmetic:

- a full team is a 507, as for a job;
- a trial that could not fit alone (checked on every grid point and range extreme, as the
  other trial checks) is a 422 at the parameter that makes it so, or at
  ``spec.checkpointing.keep_last``;
- ``max_trials`` trials, each keeping at least what the smallest trial keeps (a finished
  trial keeps its checkpoints until it is deleted), over what is left is a 422 at
  ``max_trials``.

Sizes are lower bounds (``ml.resources.checkpoint_size``): what is refused cannot fit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.storage.quota import kept_checkpoints, refuse_when_full, size_parts, team_room
from api.sweeps import space
from api.sweeps.schemas import SweepCreate
from ml.architecture import TrainError
from ml.checks import DatasetInfo
from ml.resources import estimate
from ml.spec import JobSpec


@dataclass(frozen=True)
class _Trial:
    setting: str
    point: dict[str, Any]
    kept: int
    size: int
    parts: str

    @property
    def total(self) -> int:
        return self.kept * self.size


def _trial(
    base: dict[str, Any], point: dict[str, Any], info_for: Callable[[JobSpec], DatasetInfo]
) -> _Trial | None:
    try:
        trial = JobSpec.model_validate(space.substitute(base, point))
        est = estimate(trial, info_for(trial))
    except (ValidationError, TrainError):  # refused by the other checks already
        return None
    kept, size = kept_checkpoints(trial, est)
    setting = ", ".join(f"{p}={json.dumps(v)}" for p, v in point.items()) or "the spec"
    return _Trial(setting, point, kept, size.total, size_parts(size))


def _trials(body: SweepCreate, info_for: Callable[[JobSpec], DatasetInfo]) -> list[_Trial]:
    base = body.spec.model_dump(mode="json")
    found = (_trial(base, point, info_for) for point, _ in space._points(body.parameters))
    return [t for t in found if t is not None]


def _owner(
    body: SweepCreate, trial: _Trial, left: int, info_for: Callable[[JobSpec], DatasetInfo]
) -> str:
    """Where the problem is: the parameter whose value alone takes the spec past what is
    left, else the spec's keep_last."""
    base = body.spec.model_dump(mode="json")
    alone = _trial(base, {}, info_for)
    if alone is None or alone.total <= left:
        for path, value in trial.point.items():
            one = _trial(base, {path: value}, info_for)
            if one is not None and one.total > left:
                return space.param_loc(path)
    return "spec.checkpointing.keep_last"


def storage_problems(
    session: Session,
    team_id: str,
    body: SweepCreate,
    max_trials: int,
    info_for: Callable[[JobSpec], DatasetInfo],
    default_quota: int,
) -> list[space.Problem]:
    refuse_when_full(session, team_id, default_quota)  # 507, as for a job
    room = team_room(session, team_id, default_quota)
    if room is None:
        return []
    quota, usage = room
    stored = usage.total_bytes
    left = max(quota - stored, 0)
    trials = _trials(body, info_for)
    if not trials:
        return []
    of_quota = (
        f"the {left:,} bytes the team has left of its storage quota of {quota:,} "
        f"({stored:,} stored)"
    )
    largest = max(trials, key=lambda t: t.total)
    if largest.total > left:
        loc = _owner(body, largest, left, info_for)
        fit = left // largest.size if largest.size else largest.kept
        return [
            space.Problem(
                loc,
                f"with {largest.setting}, a trial keeps {largest.kept} checkpoints (keep_last + "
                f"keep_best, at most the ones it saves) x {largest.size:,} bytes "
                f"({largest.parts}) = {largest.total:,} bytes, more than {of_quota}: "
                f"{'at most ' + str(fit) + ' fit' if fit else 'not even one fits'}; lower "
                "keep_last/keep_best or the model's size, or free storage",
                "checkpoints_over_storage_quota",
            )
        ]
    smallest = min(trials, key=lambda t: t.total)
    if max_trials * smallest.total > left:
        fit = left // smallest.total if smallest.total else max_trials
        return [
            space.Problem(
                "max_trials",
                f"{max_trials} trials, each keeping at least {smallest.total:,} bytes of "
                f"checkpoints (the smallest trial, {smallest.setting}: {smallest.kept} x "
                f"{smallest.size:,} bytes, {smallest.parts}) = {max_trials * smallest.total:,} "
                f"bytes, more than {of_quota}; a finished trial keeps its checkpoints until it "
                f"is deleted: at most {fit} trials fit: lower max_trials, "
                "checkpointing.keep_last or the model's size, or free storage",
                "checkpoints_over_storage_quota",
            )
        ]
    return []
