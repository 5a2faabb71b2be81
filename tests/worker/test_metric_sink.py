"""The SQL sinks on SQLite: metric batches, fencing, non-finite values, downsampling,
checkpoints (chunks, sha256, retention, resume). The ``contract_*`` functions take a
session factory and run unchanged against PostgreSQL in tests/integration/test_store_pg.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.checkpoints import repository as ckrepo
from api.db import blobs
from api.db.blobs import BlobChunk
from api.db.session import session_factory
from api.jobs.events_router import _data as sse_data
from api.ledger import events
from api.ledger import metrics as metrics_repo
from api.ledger import repository as repo
from api.ledger import series as series_mod
from api.ledger.models import Job, MetricPoint
from api.ledger.series import Series, read_series
from api.settings import Settings
from ml.sinks import CheckpointBlob
from ml.spec import JobSpec
from tests.worker.helpers import insert_job
from worker.checkpoint_sink import SqlCheckpointSink
from worker.metric_sink import SqlMetricSink

IRIS = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 3}
Factory = sessionmaker[Session]


def running_job(factory: Factory, spec: dict[str, object] | None = None) -> str:
    """A job claimed by attempt 1."""
    with factory() as s:
        job_id = insert_job(s, spec or IRIS)
        assert repo.claim_job(s, job_id, 30) == 1
        s.commit()
        return job_id


def requeue(factory: Factory, job_id: str) -> int:
    """What a lost worker's job goes through: running → queued → claimed by attempt + 1."""
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None
        repo.finish_job(s, job_id, job.attempt, status="failed", reason="error")
        s.refresh(job)
        assert repo.retry_job(s, job)
        attempt = repo.claim_job(s, job_id, 30)
        s.commit()
        assert attempt is not None
        return attempt


def series(factory: Factory, job_id: str, **kw: object) -> dict[str, Series]:
    with factory() as s:
        return read_series(s, job_id, None, None, **kw)  # type: ignore[arg-type]


def values(found: Series) -> list[float]:
    return [math.nan if v is None else v for _, _, v in found.rows]


# ----------------------------------------------------------------------------- contracts


def contract_upserts_are_idempotent(factory: Factory) -> None:
    job_id = running_job(factory)
    sink = SqlMetricSink(factory, job_id, 1, flush_points=3, background=False)
    for step in range(1, 6):
        sink.log(step, 0, {"loss": 1.0 / step, "lr": 0.1})
    sink.flush()
    for step in range(3, 6):  # a replay of the same steps (a redelivered batch)
        sink.log(step, 0, {"loss": 9.0})
    sink.close()
    got = series(factory, job_id)
    assert [r[0] for r in got["loss"].rows] == [1, 2, 3, 4, 5]
    assert values(got["loss"])[2:] == [9.0, 9.0, 9.0]
    assert got["lr"].total == 5
    assert sink.points_written == sink.points_logged == 13


def contract_stale_attempts_are_rejected(factory: Factory) -> None:
    job_id = running_job(factory)
    old_metrics = SqlMetricSink(factory, job_id, 1, background=False)
    old_ckpts = SqlCheckpointSink(factory, job_id, 1, JobSpec.model_validate(IRIS))
    old_metrics.log(1, 0, {"loss": 1.0})
    old_metrics.flush()
    assert requeue(factory, job_id) == 2
    old_metrics.log(2, 0, {"loss": 2.0})
    with pytest.raises(repo.StaleAttempt):
        old_metrics.flush()
    chunks = select(func.count()).select_from(BlobChunk)
    with factory() as s:
        chunks_before = s.scalar(chunks)
    with pytest.raises(repo.StaleAttempt):
        old_ckpts.save(CheckpointBlob(b"w", b"r"), 2, 0, {"val_loss": 0.5})
    with factory() as s:
        assert ckrepo.list_checkpoints(s, job_id) == []
        # The fence comes after the chunks: the rejected save's chunks were rolled back.
        assert s.scalar(chunks) == chunks_before
    assert [r[0] for r in series(factory, job_id)["loss"].rows] == [1]


def contract_non_finite_values_round_trip(factory: Factory) -> None:
    job_id = running_job(factory)
    sink = SqlMetricSink(factory, job_id, 1, background=False)
    logged = [1.5, math.nan, math.inf, -math.inf, -0.0, 1e300, 5e-324]
    for step, v in enumerate(logged, start=1):
        sink.log(step, 0, {"loss": v})
    sink.close()
    back = values(series(factory, job_id)["loss"])
    assert len(back) == len(logged)
    for want, got in zip(logged, back, strict=True):
        assert (math.isnan(want) and math.isnan(got)) or want == got, (want, got)
    # The JSON forms the API and the metrics event use.
    assert [events.json_float(None if math.isnan(v) else v) for v in logged[:4]] == [
        1.5,
        "NaN",
        "Infinity",
        "-Infinity",
    ]
    with factory() as s:
        event = events.events_after(s, job_id, 0, 100)[-1]
        assert event.kind == events.METRICS
        assert event.payload == {"attempt": 1, "count": 7, "ranges": {"loss": [1, 7]}}
        # What the events endpoint sends for it: strict JSON, non-finite values as strings.
        data = json.loads(sse_data(s, job_id, event.kind, event.payload))
    pts = data["series"][0]["points"]
    assert [p["value"] for p in pts[:4]] == [1.5, "NaN", "Infinity", "-Infinity"]
    assert [p["step"] for p in pts] == list(range(1, 8))


def contract_downsampling_keeps_the_shape(factory: Factory, n: int) -> None:
    """A long noisy series with a spike, a dip, a NaN: every one survives ``max_points``."""
    job_id = running_job(factory)
    spike, dip, nan_at = n // 3, 2 * n // 3, n // 2 + 7
    points = []
    for step in range(1, n + 1):
        v = math.sin(step / 5000) + (step % 7) * 1e-3
        if step == spike:
            v = 50.0
        elif step == dip:
            v = -50.0
        elif step == nan_at:
            v = math.nan
        points.append(metrics_repo.Point("loss", step, step // 1000, v))
    with factory() as s:
        repo.fence(s, job_id, 1)
        for i in range(0, n, 50_000):  # direct batches: the sink's path is tested elsewhere
            metrics_repo.write_metrics(s, job_id, 1, points[i : i + 50_000])
        s.commit()
    start = time.perf_counter()
    got = series(factory, job_id, max_points=1000)["loss"]
    took = time.perf_counter() - start
    steps = [r[0] for r in got.rows]
    assert got.total == n and len(got.rows) <= 1000
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == n
    vals = values(got)
    assert max(v for v in vals if not math.isnan(v)) == 50.0
    assert min(v for v in vals if not math.isnan(v)) == -50.0
    assert (nan_at, nan_at // 1000) in [(r[0], r[1]) for r in got.rows if r[2] is None]
    # Each bucket keeps its true extremes, so the envelope is the full series' envelope.
    ordinary = [p.value for p in points if p.step not in (spike, dip, nan_at)]
    kept = [v for r, v in zip(got.rows, vals, strict=True) if r[0] not in (spike, dip, nan_at)]
    assert (min(kept), max(kept)) == (min(ordinary), max(ordinary))
    # The two ways of computing M4 (SQL per bucket, one pass in Python) agree exactly.
    with factory() as s:
        conn, where = s.connection(), [MetricPoint.job_id == job_id, MetricPoint.name == "loss"]
        in_sql = series_mod._m4_in_sql(conn, where, 1, n, 97)
        in_python = series_mod._m4(series_mod._stream(conn, where), 1, n, 97)
    assert in_sql == in_python
    finer = series(factory, job_id, max_points=n // 10)["loss"]  # small buckets: the Python pass
    assert n // 20 < len(finer.rows) <= n // 10 and finer.downsampled
    assert {r[0] for r in got.rows} >= {spike, dip, nan_at}
    assert {r[0] for r in finer.rows} >= {spike, dip, nan_at}
    # Short series are returned whole; since_step narrows the range first.
    with factory() as s:
        tail = read_series(s, job_id, ["loss"], n - 99, 1000)["loss"]
    assert [r[0] for r in tail.rows] == list(range(n - 99, n + 1))
    print(f"downsampled {n} points in {took:.2f}s")  # shown with pytest -s


SPEC_KEEP = {
    **IRIS,
    "checkpointing": {"keep_last": 2, "keep_best": 1, "monitor": "val_loss"},
}


def blob(i: int, size: int = 10) -> CheckpointBlob:
    weights = bytes([i % 256]) * size
    return CheckpointBlob(weights=weights, resume=b"resume-%d" % i)


def contract_checkpoints_round_trip_and_retention(factory: Factory) -> None:
    job_id = running_job(factory, SPEC_KEEP)
    sink = SqlCheckpointSink(factory, job_id, 1, JobSpec.model_validate(SPEC_KEEP), chunk_bytes=4)
    assert sink.load() is None
    losses = [0.9, 0.3, 0.5, 0.7, math.nan]  # best is the second; the last is NaN
    for i, loss in enumerate(losses):
        sink.save(blob(i, size=10 + i), step=10 * (i + 1), epoch=i, metrics={"val_loss": loss})
    with factory() as s:
        kept = ckrepo.list_checkpoints(s, job_id)
        assert [c.step for c in kept] == [20, 40, 50]  # best + last two
        assert [c.is_best for c in kept] == [True, False, False]
        assert kept[-1].metrics == {"val_loss": "NaN"}
        for c in kept:
            weights = ckrepo.read_file(s, c.id, "weights")
            assert c.sha256 == hashlib.sha256(weights).hexdigest()
            assert c.size_bytes == len(weights) == 10 + c.epoch
            assert len(blobs.chunk_seqs(s, ckrepo.file_ref(c.id, "weights"))) == math.ceil(
                len(weights) / 4
            )
        # Deleted checkpoints freed their chunk rows.
        owners = set(s.scalars(select(BlobChunk.checkpoint_id).distinct()))
        assert {c.id for c in kept} <= owners
        assert not owners & (set(sink.saved) - {c.id for c in kept})
        kinds = [e.kind for e in events.events_after(s, job_id, 0, 100)]
        assert kinds.count(events.CHECKPOINT) == 5
    # load() resumes from the latest, and a new attempt keeps the same store.
    attempt = requeue(factory, job_id)
    again = SqlCheckpointSink(factory, job_id, attempt, JobSpec.model_validate(SPEC_KEEP))
    assert again.load() == blob(4, size=14)
    assert again.resumed_from == kept[-1].id


def contract_max_mode_retention(factory: Factory) -> None:
    spec = {**IRIS, "checkpointing": {"keep_last": 1, "keep_best": 2, "monitor": "val_accuracy"}}
    job_id = running_job(factory, spec)
    sink = SqlCheckpointSink(factory, job_id, 1, JobSpec.model_validate(spec))
    for i, acc in enumerate([0.5, 0.9, 0.9, 0.7, 0.6]):
        sink.save(blob(i), step=i + 1, epoch=i, metrics={"val_accuracy": acc})
    with factory() as s:
        kept = ckrepo.list_checkpoints(s, job_id)
    # max mode (auto: an accuracy); a tie keeps the earlier as best, like Keras.
    assert [(c.step, c.is_best) for c in kept] == [(2, True), (3, False), (5, False)]


# ----------------------------------------------------------------------------- on SQLite


@pytest.fixture
def factory(settings: Settings) -> Factory:
    return session_factory(settings.resolved_database_url)


def test_upserts_are_idempotent(factory: Factory) -> None:
    contract_upserts_are_idempotent(factory)


def test_stale_attempts_are_rejected(factory: Factory) -> None:
    contract_stale_attempts_are_rejected(factory)


def test_non_finite_values_round_trip(factory: Factory) -> None:
    contract_non_finite_values_round_trip(factory)


@pytest.mark.slow
def test_downsampling_keeps_the_shape(factory: Factory) -> None:
    contract_downsampling_keeps_the_shape(factory, 200_000)


def test_checkpoints_round_trip_and_retention(factory: Factory) -> None:
    contract_checkpoints_round_trip_and_retention(factory)


def test_max_mode_retention(factory: Factory) -> None:
    contract_max_mode_retention(factory)


def stored(factory: Factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(MetricPoint)) or 0


def test_background_flusher_batches_and_flush_is_synchronous(factory: Factory) -> None:
    job_id = running_job(factory)
    sink = SqlMetricSink(
        factory, job_id, 1, flush_points=100, flush_seconds=60, min_flush_interval=0
    )
    for step in range(1, 151):
        sink.log(step, 0, {"loss": 1.0})
    # flush_points reached: the flusher thread writes without the training thread waiting.
    deadline = time.monotonic() + 10
    while stored(factory) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stored(factory) >= 100
    for step in range(151, 1001):
        sink.log(step, 0, {"loss": 1.0})
    sink.flush()  # returns only once all 1000 are committed
    assert stored(factory) == 1000
    assert sink.batches_written <= 11  # batches, not a commit per point
    sink.close()


def test_a_full_buffer_applies_backpressure(factory: Factory) -> None:
    job_id = running_job(factory)
    # The flusher never wakes on its own (flush_points and flush_seconds out of reach):
    # the bound alone must keep the buffer small.
    sink = SqlMetricSink(
        factory, job_id, 1, flush_points=10**9, flush_seconds=3600, buffer_limit=50
    )
    for step in range(1, 501):
        sink.log(step, 0, {"a": 1.0, "b": 2.0})
    assert sink.max_buffered <= 50
    assert sink.backpressure_flushes == 1000 // 50
    assert sink.points_written == 1000  # nothing dropped
    sink.close()


def test_a_fenced_flusher_stops_the_training_thread(factory: Factory) -> None:
    job_id = running_job(factory)
    sink = SqlMetricSink(factory, job_id, 1, flush_points=5, flush_seconds=0.05)
    requeue(factory, job_id)
    sink.log(1, 0, {"loss": 1.0})
    deadline = time.monotonic() + 10
    with pytest.raises(repo.StaleAttempt):  # raised in this thread, at the next log
        while time.monotonic() < deadline:
            sink.log(2, 0, {"loss": 1.0})
            time.sleep(0.01)
    flusher = next((t for t in threading.enumerate() if t.name == f"metrics-{job_id}"), None)
    if flusher is not None:
        flusher.join(timeout=5)
        assert not flusher.is_alive()  # the flusher stopped at the first fenced write


def test_load_drops_points_after_the_resume_step(factory: Factory) -> None:
    job_id = running_job(factory)
    spec = JobSpec.model_validate(IRIS)
    sink = SqlMetricSink(factory, job_id, 1, background=False)
    for step in range(1, 21):
        sink.log(step, step // 10, {"loss": float(step)})
    sink.flush()
    SqlCheckpointSink(factory, job_id, 1, spec).save(blob(0), 10, 0, {"val_loss": 1.0})
    attempt = requeue(factory, job_id)
    assert SqlCheckpointSink(factory, job_id, attempt, spec).load() is not None
    assert [r[0] for r in series(factory, job_id)["loss"].rows] == list(range(1, 11))
