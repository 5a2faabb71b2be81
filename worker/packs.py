"""Packed sweeps, the worker's side of the claim (issue 26).

When a worker claims a trial of a sweep whose ``execution.pack`` is ``auto``, it claims
in the same transaction up to ``max_pack - 1`` other queued trials of that sweep and
queue whose specs have the same ``ml.pack_key`` and no ``pack_blocker`` -- each with the
ordinary claim (``queued`` -> ``running``, attempt + 1, the same lease), and never more
than the team's ``max_running_jobs`` allows: every member counts as a running job, the
pack takes one worker slot. The claim's team lock (api.ledger.scheduling.claim_next)
serialises it against every other claim of the team, so the quota holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.ledger import repository as jobs_repo
from api.ledger import scheduling
from api.ledger.models import Job
from api.ledger.scheduling import Claimed
from api.sweeps import repository as sweeps_repo
from api.sweeps.search import execution_of
from ml.pack_key import pack_blocker, pack_key
from ml.spec import JobSpec

log = logging.getLogger(__name__)


@dataclass
class PackClaim:
    """The lead's claim and its companions' (by trial number), or why none were sought."""

    members: list[Claimed]
    pack_id: str | None = None
    sweep_id: str | None = None
    blocked: str | None = None  # pack_blocker's reason: the sweep's log says it
    numbers: dict[str, int] = field(default_factory=dict)


def _room_in_quota(session: Session, team_id: str) -> int | None:
    """Devices the team may still start (a member counts one, as a 1-device job does)."""
    room = scheduling.team_room(session, team_id)
    return None if room is None else max(0, room)


def _spec(job: Job) -> JobSpec | None:
    try:
        return JobSpec.model_validate(job.spec)
    except ValidationError:
        return None  # the runner fails it (invalid_spec) when it runs alone


def claim_pack(session: Session, lead: Claimed, lease_seconds: float, worker: str) -> PackClaim:
    """Add companions to ``lead`` (already claimed in this transaction) when its sweep packs."""
    alone = PackClaim([lead])
    job = session.get(Job, lead.job_id)
    if job is None or job.sweep_id is None:
        return alone
    sweep = sweeps_repo.get_sweep(session, job.sweep_id, None)
    if sweep is None:
        return alone
    execution = execution_of(sweep.execution)
    if execution.pack == "off" or execution.max_pack < 2:
        return alone
    spec = _spec(job)
    if spec is None:
        return alone
    blocker = pack_blocker(spec)
    if blocker is not None:
        return PackClaim([lead], sweep_id=sweep.id, blocked=blocker)
    key = pack_key(spec)
    room = execution.max_pack - 1
    quota_room = _room_in_quota(session, job.team_id)  # the lead counts already
    if quota_room is not None:
        room = min(room, quota_room)
    companions: list[tuple[int, Claimed]] = []
    for other in sweeps_repo.pack_candidates(session, sweep.id, job.queue, job.id, 1000):
        if len(companions) >= room:
            break
        other_spec = _spec(other)
        if other_spec is None or pack_blocker(other_spec) is not None:
            continue
        if pack_key(other_spec) != key:
            continue
        attempt = jobs_repo.claim_job(session, other.id, lease_seconds)
        if attempt is not None:
            companions.append((other.trial_number or 0, Claimed(other.id, attempt)))
    if not companions:
        return alone
    members = sorted([(job.trial_number or 0, lead), *companions], key=lambda m: m[0])
    claims = [c for _, c in members]
    pack = sweeps_repo.add_pack(session, sweep.id, [c.job_id for c in claims], key, worker)
    numbers = {c.job_id: n for n, c in members}
    return PackClaim(claims, pack_id=pack.id, sweep_id=sweep.id, numbers=numbers)


def note_packing_off(session: Session, sweep_id: str, reason: str) -> None:
    """The sweep's log says, once, why its trials train alone (a ``packing_off`` event)."""
    sweep = sweeps_repo.lock_sweep(session, sweep_id)  # events in commit order
    if sweep is None or sweeps_repo.packing_off_reason(session, sweep_id) is not None:
        return
    sweeps_repo.add_event(session, sweep_id, sweeps_repo.PACKING_OFF, {"reason": reason})
