"""The throttled `progress` event: the engine reports inside epochs, the worker writes at
most one row per interval and keeps only the latest, the SSE stream carries it."""

from __future__ import annotations

import json
import threading
import time

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db.session import session_factory
from api.ledger import repository as repo
from api.ledger.events import JobEvent
from api.ledger.progress import PROGRESS, record_progress
from api.settings import Settings
from ml.engine import train
from ml.sinks import StepProgress
from ml.spec import JobSpec
from tests.worker.helpers import insert_job
from worker.progress import ProgressWriter, SharedProgress

Factory = sessionmaker[Session]
DIGITS = {
    "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 8},
    "model": {"kind": "mlp", "hidden_units": [16]},
    "epochs": 2,
    "resources": {"device": "cpu"},
}


def running_job(factory: Factory) -> str:
    with factory() as s:
        job_id = insert_job(s, DIGITS)
        assert repo.claim_job(s, job_id, 30) == 1
        s.commit()
        return job_id


def progress_rows(factory: Factory, job_id: str) -> list[JobEvent]:
    with factory() as s:
        stmt = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == PROGRESS)
        return list(s.scalars(stmt))


def test_the_engine_reports_progress_inside_each_epoch() -> None:
    reports: list[StepProgress] = []
    train(JobSpec.model_validate(DIGITS), on_step_progress=reports.append)
    assert reports, "no progress inside the epochs"
    spe = reports[0].steps_per_epoch
    assert spe == 180  # 1437 training samples, batches of 8
    assert {r.epoch for r in reports} == {0, 1}
    assert all(0 < r.batch <= spe and r.epochs == 2 for r in reports)
    assert all(r.step == r.epoch * spe + r.batch for r in reports)
    assert [r.step for r in reports] == sorted({r.step for r in reports})
    assert all(r.loss is not None and 0 < r.loss < 10 for r in reports)


def test_the_writer_keeps_only_the_latest_and_stops_when_fenced(settings: Settings) -> None:
    factory = session_factory(settings.resolved_database_url)
    job_id = running_job(factory)
    writer = ProgressWriter(factory, job_id, 1, interval=0.05)
    writer.start()
    for batch in range(1, 6):
        writer.report(StepProgress(0, 2, batch, batch, 180, 1.0 / batch))
        deadline = time.monotonic() + 10
        while writer.events_written < batch and time.monotonic() < deadline:
            time.sleep(0.02)
    rows = progress_rows(factory, job_id)
    assert writer.events_written == 5
    assert len(rows) == 1  # each new one replaces the previous
    assert rows[0].payload["batch"] == 5 and rows[0].payload["loss"] == 0.2
    with factory() as s:
        repo.finish_job(s, job_id, 1, status="succeeded", reason="completed")
        s.commit()
    writer.report(StepProgress(0, 2, 6, 6, 180, 0.1))
    writer.close()
    assert writer.events_written == 5  # the job has ended: nothing more is written
    assert progress_rows(factory, job_id)[0].payload["batch"] == 5


def test_the_events_stream_carries_progress(client: TestClient, settings: Settings) -> None:
    job_id = client.post("/v1/jobs", json={"spec": DIGITS}).json()["id"]
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        assert repo.claim_job(s, job_id, 30) == 1
        record_progress(s, job_id, 1, epoch=0, epochs=2, step=32, batch=32,
                        steps_per_epoch=180, loss=float("nan"))  # fmt: skip
        s.commit()
        repo.finish_job(s, job_id, 1, status="canceled", reason="canceled_by_user")
        s.commit()
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        text = "".join(response.iter_text())
    blocks = [b for b in text.split("\n\n") if "event: progress" in b]
    assert len(blocks) == 1
    data = json.loads(next(ln[6:] for ln in blocks[0].splitlines() if ln.startswith("data: ")))
    assert data == {"kind": "progress", "attempt": 1, "epoch": 0, "epochs": 2, "step": 32,
                    "batch": 32, "steps_per_epoch": 180, "loss": "NaN"}  # fmt: skip


def test_a_packs_members_share_one_writer_that_takes_them_in_turn(settings: Settings) -> None:
    """Issue 26: one thread writes every member's progress, ``per_tick`` members a tick in
    turn (a pack writes about as much as that many solo jobs); a member fenced off (its
    job ended) is skipped and the others still write in the same session."""
    factory = session_factory(settings.resolved_database_url)
    jobs = [running_job(factory) for _ in range(5)]
    writers = [ProgressWriter(factory, j, 1, own_thread=False) for j in jobs]
    shared = SharedProgress(factory, writers, per_tick=2)
    for w in writers:
        w.report(StepProgress(0, 2, 3, 3, 180, 0.5))
    picked = [[writers.index(w) for w in shared.due()] for _ in range(3)]
    assert picked == [[0, 1], [2, 3], [4, 0]]  # in turn: nobody starves
    with factory() as s:
        repo.finish_job(s, jobs[1], 1, status="succeeded", reason="completed")
        s.commit()
    with factory() as s:
        for w in writers:
            w.write(s)
    assert writers[1].done and writers[1].events_written == 0
    assert [w.events_written for w in writers] == [1, 0, 1, 1, 1]
    assert [len(progress_rows(factory, j)) for j in jobs] == [1, 0, 1, 1, 1]
    assert shared.due() == []  # nothing new: no writes, no session
    writers[3].report(StepProgress(0, 2, 4, 4, 180, 0.4))
    assert shared.due() == [writers[3]]
    threads_before = {t.name for t in threading.enumerate()}
    shared.start()
    deadline = time.monotonic() + 10
    while writers[3].events_written < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writers[3].events_written == 2
    assert progress_rows(factory, jobs[3])[0].payload["batch"] == 4
    mine = {t.name for t in threading.enumerate()} - threads_before
    assert mine == {"progress-pack"}  # not a thread per member
    shared.close()
