"""Run one job -- or one pack of a sweep's trials -- : claim it, train it behind the SQL
sinks, record how each job ended.

A pack (issue 26, worker/packs.py) is several ordinary jobs claimed in one transaction
and trained by ``ml.pack.train_pack`` in this process; every member is set up
(``worker.attempt.Attempt``), judged (``_outcome_of``/``_outcome_of_error``) and finished
(``_finish``) by the same code as a job that trains alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from api.db.session import session_factory
from api.ledger import repository as repo
from api.ledger import scheduling
from api.ledger.devices import Pool
from api.ledger.models import Job
from api.queue import CeleryJobQueue
from api.settings import Settings, get_settings
from api.storage.repository import StorageQuotaExceeded
from ml.architecture import multiply_adds_per_sample
from ml.checks import builtin_info
from ml.data import LoadedDataset
from ml.engine import InvalidSpec, NonFiniteLoss, TrainError, TrainResult, train
from ml.launch import RankLost
from ml.pack import PackMember, train_pack
from ml.resources import ResourcesExceeded
from ml.spec import BuiltinSource, JobSpec
from worker import log_sink, packs, sweeps, torch_threads
from worker.attempt import Attempt, LeaseKeeper, Outcome, SharedHeartbeat
from worker.datasets import load_for_job
from worker.devices import this_worker_pool
from worker.export import export_job
from worker.job_resources import check_job_resources
from worker.log_sink import SqlLogSink
from worker.metric_sink import with_db_retry
from worker.metrics_server import RUNNING
from worker.progress import SharedProgress
from worker.report import report_job
from worker.warm_start import load_warm_start

__all__ = ["Attempt", "LeaseKeeper", "Outcome", "run_job"]

log = logging.getLogger(__name__)
PACK_PROGRESS_JOBS = 4  # a pack's live progress writes: as many as this many solo jobs'


def _step_work(spec: JobSpec, dataset: LoadedDataset | None) -> int:
    """Forward multiply-adds of one training step (the thread count's other input)."""
    source = spec.dataset.source
    if dataset is not None:
        info = dataset.info
    else:  # load_for_job loads uploads only; a builtin is read by the engine
        assert isinstance(source, BuiltinSource)
        info = builtin_info(source)
    return multiply_adds_per_sample(spec, info) * spec.dataset.batch_size


def _claim(
    session: Session, job_id: str, lease_seconds: float, pool: Pool
) -> packs.PackClaim | None:
    # The message is a doorbell for the job's queue: run the best eligible job of
    # that queue (quotas, priority, fairness) whose devices this worker's pool can give
    # now, usually the job itself (its devices reserved by the claim) -- and, for a
    # trial of a packing sweep, its pack-mates in the same transaction (the pack rides
    # in the lead's slot).
    queue = scheduling.queue_of(session, job_id)
    lead = scheduling.claim_next(session, queue, lease_seconds, pool) if queue else None
    if lead is None:
        return None
    return packs.claim_pack(session, lead, lease_seconds, log_sink.WORKER_NAME)


def _wake_next(factory: sessionmaker[Session], settings: Settings, job_id: str) -> None:
    """A slot just freed: ring for the next eligible job (it may have waited on a quota)."""
    if settings.unsafe_no_republish:
        return
    with factory() as session:
        queue = scheduling.queue_of(session, job_id)
        order = scheduling.pick_order(session, queue) if queue else []
    if order and queue:
        CeleryJobQueue(settings).publish(order[0], queue)


def run_job(job_id: str, settings: Settings | None = None, pool: Pool | None = None) -> str:
    """Returns how it ended, in words (what the Celery task logs). ``pool``: the devices
    this worker draws from (default: this process's, worker/devices.py)."""
    settings = settings or get_settings()
    pool = pool or this_worker_pool(settings)
    factory = session_factory(
        settings.resolved_database_url, settings.db_idle_in_transaction_seconds
    )
    claimed = with_db_retry(factory, lambda s: _claim(s, job_id, settings.lease_seconds, pool))
    if claimed is None:
        said = f"nothing to run for job {job_id}'s message (duplicate, canceled, quota or devices)"
        log.info("%s", said)
        return said
    first = claimed.members[0].job_id
    try:
        if claimed.blocked is not None and claimed.sweep_id is not None:
            _note_packing_off(factory, claimed.sweep_id, claimed.blocked)
        if len(claimed.members) == 1:
            note = (
                None if claimed.blocked is None else f"trains alone, not packed: {claimed.blocked}"
            )
            lead = claimed.members[0]
            return _run_claimed(
                factory, settings, first, lead.attempt, note, device_ids=lead.device_ids
            )
        return _run_pack(factory, settings, claimed)
    finally:
        try:
            _wake_next(factory, settings, first)
        except Exception:
            log.warning("could not wake the next job", exc_info=True)


def _note_packing_off(factory: sessionmaker[Session], sweep_id: str, reason: str) -> None:
    try:
        with_db_retry(factory, lambda s: packs.note_packing_off(s, sweep_id, reason))
    except Exception:  # a note, never a reason to fail the trial
        log.warning("sweep %s: could not note why packing is off", sweep_id, exc_info=True)


def _fail_unrunnable_spec(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    exc: ValidationError,
) -> str:
    """A stored spec that today's validation refuses: ``failed``/``invalid_spec``, not a crash."""
    problems = "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
    )
    error = f"this job's spec no longer validates: {problems}"
    outcome = Outcome(reason="invalid_spec", error=error)
    return _record(factory, settings, job_id, attempt, SqlLogSink(job_id, attempt, 10), outcome)


def _begin(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    *,
    track: bool = True,
    device_ids: list[int] | None = None,
    in_pack: bool = False,
) -> Attempt | str:
    """Set up one claimed attempt; a spec that no longer validates ends it here (the words)."""
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
    try:
        spec = JobSpec.model_validate(job.spec)
    except ValidationError as exc:  # stored before a check was tightened: it cannot run
        return _fail_unrunnable_spec(factory, settings, job_id, attempt, exc)
    return Attempt.start(
        factory, settings, job, spec, attempt,
        track=track, device_ids=device_ids, in_pack=in_pack,
    )  # fmt: skip


def _finish(run: Attempt, outcome: Outcome) -> str:
    """Close the attempt's sinks and record its outcome (unless it was fenced off)."""
    run.close()
    job_id, attempt = run.job.id, run.attempt
    if run.keeper.fenced:
        log.warning(
            "job %s attempt %s lost its lease; leaving the job to its new owner", job_id, attempt
        )
        return f"job {job_id} attempt {attempt} lost its lease; left to its new owner"
    if outcome.progress is None:
        # A failure without its own step (an error, a quota) stops where the engine
        # last reported, not where the last heartbeat happened to write.
        outcome.progress = run.keeper.last_progress
    return _record(run.factory, run.settings, job_id, attempt, run.lines, outcome)


def _run_claimed(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    note: str | None = None,
    *,
    device_ids: list[int] | None = None,
) -> str:
    """Run a claimed attempt alone. ``device_ids``: which devices of this worker's pool the
    claim reserved for it (issue 27; the data-parallel engine runs one rank on each)."""
    run = _begin(factory, settings, job_id, attempt, device_ids=device_ids)
    if isinstance(run, str):
        return run
    if note is not None:
        run.lines.worker_line("info", note)
    try:
        outcome = _train(run)
    except BaseException:
        run.close()
        raise
    return _finish(run, outcome)


def _prepare(run: Attempt) -> LoadedDataset | None:
    """Check the job against this worker's limits, load its data, choose the threads."""
    check_job_resources(run.factory, run.spec, run.job.team_id, run.settings)  # before allocating
    dataset = load_for_job(run.factory, run.job)
    if run.spec.resources.devices == 1:  # data parallel: each rank process takes one
        chosen = torch_threads.apply(run.settings.torch_threads, _step_work(run.spec, dataset))
        run.lines.worker_line("info", f"{chosen.threads} CPU thread(s): {chosen.why}")
    return dataset


def _train(run: Attempt) -> Outcome:
    """Check, load, train and export; every way it can end, as an outcome."""
    try:
        dataset = _prepare(run)
        result = train(
            run.spec,
            metrics=run.metrics,
            checkpoints=run.checkpoints,
            control=run.keeper,
            on_progress=RUNNING.track(run.keeper.on_progress),
            on_step_progress=run.live.report,
            dataset=dataset,
            logs=run.lines,
            pruner=sweeps.pruner_for_job(run.factory, run.job.id),  # a sweep trial's early stop
            warm_start=load_warm_start(run.factory, run.job, run.spec),  # issue 24
            device_ids=run.device_ids,  # issue 27
        )
        return _after_training(run, result, dataset)
    except Exception as exc:  # noqa: BLE001 - every way it ends is an outcome
        return _outcome_of_error(run, exc)


def _after_training(run: Attempt, result: TrainResult, dataset: LoadedDataset | None) -> Outcome:
    """The engine's result as an outcome; a finished job's model export and report."""
    outcome = _outcome_of(result, run.keeper, run.spec)
    if result.epochs_completed >= 1 and outcome.status in ("succeeded", "canceled"):
        # Before the final status: a finished job's model is there (or its export error).
        export_job(run.factory, run.job.id, run.attempt, run.spec, dataset, result.final_metrics)
    if outcome.status == "succeeded":  # the validation report of the best checkpoint
        report_job(run.factory, run.job.id, run.attempt, run.spec, dataset)
    return outcome


def _outcome_of_error(run: Attempt, exc: BaseException) -> Outcome:
    """How an attempt that raised ``exc`` ended (the engine's, a sink's, or a crash)."""
    if isinstance(exc, repo.StaleAttempt):
        run.keeper.fenced = True
        return Outcome()
    if isinstance(exc, RankLost):  # a data-parallel rank died: a lost worker, retried as one
        run.lines.worker_line("error", str(exc))
        return Outcome("queued", "worker_lost", str(exc))
    if isinstance(exc, NonFiniteLoss):  # where it stopped, as the error says
        return Outcome(reason="non_finite_loss", error=str(exc), progress=(exc.epoch, exc.step))
    if isinstance(exc, ResourcesExceeded):
        return Outcome(reason="resources_exceeded", error=str(exc))
    if isinstance(exc, StorageQuotaExceeded):  # a checkpoint would take the team over its quota
        return Outcome(reason="storage_quota_exceeded", error=str(exc))
    if isinstance(exc, InvalidSpec):  # a library refused a validated spec: retrying cannot help
        return Outcome(reason="invalid_spec", error=str(exc))
    if isinstance(exc, TrainError):
        return Outcome(error=str(exc))
    log.error("job %s crashed", run.job.id, exc_info=exc)
    run.lines.worker_line("error", log_sink.crash(exc))
    return Outcome(error=f"Internal error: {type(exc).__name__}: {exc}")


def _run_pack(factory: sessionmaker[Session], settings: Settings, claimed: packs.PackClaim) -> str:
    """Train the claimed members as one pack; finish each as an ordinary job."""
    runs: list[Attempt] = []
    said: list[str] = []
    for member in claimed.members:
        run = _begin(factory, settings, member.job_id, member.attempt, track=not runs, in_pack=True)
        if isinstance(run, str):
            said.append(run)
        else:
            runs.append(run)
    # One heartbeat thread for every member's lease and one writer thread for their live
    # progress, which writes about as much as PACK_PROGRESS_JOBS solo jobs (issue 26: was
    # two threads per member).
    lease = SharedHeartbeat(factory, settings, [r.keeper for r in runs])
    live = SharedProgress(factory, [r.live for r in runs], PACK_PROGRESS_JOBS)
    lease.start()
    live.start()
    try:
        return _train_pack_members(runs, claimed, said)
    finally:
        live.close()
        lease.close()


def _train_pack_members(runs: list[Attempt], claimed: packs.PackClaim, said: list[str]) -> str:
    """Train the members; record each one as it leaves the pack, the rest at its end."""
    outcomes: dict[str, Outcome] = {}
    finished: dict[str, str] = {}  # members recorded as they left the pack (the words)

    def finish(run: Attempt, outcome: Outcome) -> None:
        try:
            finished[run.job.id] = _finish(run, outcome)
        except Exception:  # the others are still recorded; its lease expires
            log.exception("job %s: could not record how it ended", run.job.id)
            finished[run.job.id] = f"job {run.job.id}: could not record how it ended"

    try:
        _train_pack(runs, claimed, outcomes, finish)
    except BaseException:  # as a solo job: the leases expire, the reconciler requeues
        for run in runs:
            if run.job.id not in finished:
                run.close()
        raise
    for run in runs:
        if run.job.id not in finished:
            finish(run, outcomes.get(run.job.id) or Outcome(error="Internal error: no result"))
        said.append(finished[run.job.id])
    return f"pack {claimed.pack_id} of {len(claimed.members)}: " + "; ".join(said)


def _train_pack(
    runs: Sequence[Attempt],
    claimed: packs.PackClaim,
    out: dict[str, Outcome],
    finish: Callable[[Attempt, Outcome], None],
) -> None:
    """Check each member, load the data once, train the rest as one pack: ``out`` per job,
    or ``finish`` called as a member leaves the pack (its export, report and final status
    then, while the others train on: a pruned trial is not `running` until the pack ends)."""
    numbers = ", ".join(f"#{claimed.numbers.get(r.job.id, '?')}" for r in runs)
    ready: list[Attempt] = []
    for run in runs:
        run.lines.worker_line(
            "info", f"trains in pack {claimed.pack_id} with {len(runs)} trials ({numbers})"
        )
        try:
            check_job_resources(run.factory, run.spec, run.job.team_id, run.settings)
            ready.append(run)
        except Exception as exc:  # noqa: BLE001 - this member fails alone
            out[run.job.id] = _outcome_of_error(run, exc)
    if not ready:
        return
    lead = ready[0]
    try:  # equal pack keys: the same data and the same shapes for every member
        dataset = load_for_job(lead.factory, lead.job)
        chosen = torch_threads.apply(lead.settings.torch_threads, _step_work(lead.spec, dataset))
    except Exception as exc:  # noqa: BLE001 - the data of every member
        for run in ready:
            out[run.job.id] = _outcome_of_error(run, exc)
        return
    left: set[str] = set()  # members whose end was handed over as they left the pack

    def ended(run: Attempt, result: TrainResult | BaseException) -> None:
        left.add(run.job.id)
        finish(run, _outcome_of_member(run, result, dataset))

    members = []
    for run in ready:
        run.lines.worker_line("info", f"{chosen.threads} CPU thread(s): {chosen.why}")
        progress = run.keeper.on_progress
        members.append(
            PackMember(
                job_id=run.job.id,
                spec=run.spec,
                metrics=run.metrics,
                checkpoints=run.checkpoints,
                control=run.keeper,
                logs=run.lines,
                pruner=sweeps.pruner_for_job(run.factory, run.job.id),
                on_progress=RUNNING.track(progress) if run.tracked else progress,
                on_step_progress=run.live.report,
                on_end=partial(ended, run),
            )
        )
    sweep_id = claimed.sweep_id

    def unpacked(reason: str) -> None:  # found when the models were built: the sweep's log
        if sweep_id is not None:
            _note_packing_off(lead.factory, sweep_id, reason)

    results = train_pack(members, dataset=dataset, on_unpacked=unpacked)
    for run, result in zip(ready, results, strict=True):
        if run.job.id not in left:  # it never trained in the pack, or the pack went solo
            out[run.job.id] = _outcome_of_member(run, result, dataset)


def _outcome_of_member(
    run: Attempt, result: TrainResult | BaseException, dataset: LoadedDataset | None
) -> Outcome:
    try:
        if isinstance(result, BaseException):
            return _outcome_of_error(run, result)
        return _after_training(run, result, dataset)
    except Exception as exc:  # noqa: BLE001 - its export or report: this member alone
        return _outcome_of_error(run, exc)


def _outcome_of(result: TrainResult, keeper: LeaseKeeper, spec: JobSpec) -> Outcome:
    """A run the engine finished (completed, stopped early, pruned or stopped by us)."""
    progress = (result.epochs_completed, result.step)
    if result.status_reason != "canceled":
        return Outcome("succeeded", result.status_reason, None, result.stopped_epoch, progress)
    if keeper.shutting_down and not (keeper.cancel_requested or keeper.runtime_exceeded):
        # Checkpointed as it stopped: queued again, resumed by the next worker at once.
        return Outcome("queued", "worker_shutdown", None, None, progress)
    if keeper.runtime_exceeded:
        error = (
            f"The job ran past limits.max_runtime_seconds="
            f"{spec.limits.max_runtime_seconds}; raise the limit or shorten the run."
        )
        return Outcome("failed", "max_runtime_exceeded", error, result.stopped_epoch, progress)
    return Outcome("canceled", "canceled_by_user", None, result.stopped_epoch, progress)


def _record(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    lines: SqlLogSink,
    outcome: Outcome,
) -> str:
    """The outcome line and the terminal status in one transaction; a sweep moves on."""
    if outcome.status == "queued" and outcome.reason == "worker_lost":
        return _requeue_lost(factory, settings, job_id, attempt, lines, outcome)
    if outcome.status == "queued":
        return _hand_back(factory, settings, job_id, attempt, lines, outcome)
    ended = log_sink.outcome(job_id, attempt, outcome.status, outcome.reason, outcome.error)
    lines.worker_line(log_sink.outcome_level(outcome.status), ended)  # also the worker's log
    final_lines = lines.drain()

    def finish(s: Session) -> None:
        # The outcome line first (fenced by the attempt), then the status change, in one
        # transaction: a stream shows the line, then the terminal status, then `end`.
        lines.write(s, final_lines)
        repo.finish_job(
            s,
            job_id,
            attempt,
            status=outcome.status,
            reason=outcome.reason,
            error=outcome.error,
            stopped_epoch=outcome.stopped_epoch,
            progress=outcome.progress,
        )

    try:
        # A sweep's trial: its sweep moves on (next trials) in the transaction that ends it.
        new_trials = with_db_retry(
            factory, lambda s: sweeps.finish_trial(s, job_id, lambda: finish(s))
        )
        sweeps.publish(CeleryJobQueue(settings), new_trials)
    except repo.StaleAttempt:
        log.warning("job %s attempt %s was fenced before it could finish", job_id, attempt)
        return f"job {job_id} attempt {attempt} was fenced before it could finish"
    return ended


def _requeue_lost(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    lines: SqlLogSink,
    outcome: Outcome,
) -> str:
    """A part of the attempt was lost (a rank process died): queued again under
    ``retry.max_restarts`` and its doorbell rung, or failed once they are spent."""
    final_lines = lines.drain()
    enforce = not settings.unsafe_ignore_max_restarts

    def requeue(s: Session) -> tuple[str, str | None]:
        lines.write(s, final_lines)
        error = outcome.error or "a part of this attempt was lost"
        to = repo.requeue_lost(s, job_id, attempt, error, outcome.progress, enforce)
        return to, scheduling.queue_of(s, job_id)

    try:
        to, queue = with_db_retry(factory, requeue)
    except repo.StaleAttempt:
        return f"job {job_id} attempt {attempt} was fenced before it could be requeued"
    said = f"job {job_id} attempt {attempt} {to} (worker_lost): {outcome.error}"
    log.warning(said)
    if to == "queued" and queue is not None and not settings.unsafe_no_republish:
        try:
            CeleryJobQueue(settings).publish(job_id, queue)
        except Exception:  # the idle doorbell and the reconciler find it in the ledger
            log.warning("could not ring job %s's doorbell", job_id, exc_info=True)
    return said


def _hand_back(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    lines: SqlLogSink,
    outcome: Outcome,
) -> str:
    """The worker is stopping: the job goes back to ``queued`` and its doorbell rings."""
    said = f"job {job_id} attempt {attempt} handed back (queued): this worker is stopping"
    lines.worker_line("info", said)
    final_lines = lines.drain()

    def hand_back(s: Session) -> str | None:
        lines.write(s, final_lines)
        repo.hand_back(s, job_id, attempt, outcome.reason, outcome.progress)
        return scheduling.queue_of(s, job_id)

    try:
        queue = with_db_retry(factory, hand_back)
    except repo.StaleAttempt:
        return f"job {job_id} attempt {attempt} was fenced before it could be handed back"
    if queue is not None and not settings.unsafe_no_republish:
        try:
            CeleryJobQueue(settings).publish(job_id, queue)
        except Exception:  # the idle doorbell and the reconciler find it in the ledger
            log.warning("could not ring job %s's doorbell", job_id, exc_info=True)
    return said
