"""Migration 0004 moves the three chunk tables into the one blob store: files written in the
old layout (as the code before it wrote them) read back byte-identical after it, through
the API's downloads, the worker's readers and the storage quota."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, Table, create_engine, text
from sqlalchemy.orm import Session

from api.app import create_app
from api.checkpoints.repository import Checkpoint
from api.datasets import repository as datasets_repo
from api.datasets.repository import Dataset
from api.db import blobs
from api.db.migrate import alembic_config, upgrade
from api.db.models import new_id, utcnow
from api.db.session import engine_for, session_factory
from api.predict.repository import ModelExport
from api.settings import Settings
from api.storage import repository as storage_repo
from api.teams.repository import DEFAULT_TEAM, create_api_key, get_or_create_team
from tests.conftest import PG_ADMIN_URL, FakeQueue, service_missing

BEFORE_BLOBS = "a0c3e1000003"
OLD_CHUNK = 1 << 20  # what the three modules cut files into before the blob store


def old_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """Checkpoints and exports wrote at least one (possibly empty) chunk."""
    return [
        (seq, data[off : off + OLD_CHUNK])
        for seq, off in enumerate(range(0, max(len(data), 1), OLD_CHUNK))
    ]


def insert_rows(session: Session, sql: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        session.execute(text(sql), row)


class OldStore:
    """A database at the revision before the blob store, filled as the old code filled it."""

    def __init__(self, session: Session) -> None:
        team = get_or_create_team(session, DEFAULT_TEAM)
        _, self.key = create_api_key(session, team, "admin")
        self.team_id = team.id
        # The jobs table as it was at that revision (the model may have columns added since).
        jobs = Table("jobs", MetaData(), autoload_with=session.connection())
        self.job_id = job_id = new_id()
        now = utcnow()
        session.execute(
            jobs.insert().values(
                id=job_id, team_id=team.id, status="succeeded", spec={}, spec_version="1",
                queue="q", epochs=1, priority=0, attempt=1, max_restarts=3,
                cancel_requested=False, progress_epoch=0, progress_step=0, restarts=0,
                created_at=now, updated_at=now,
            )
        )  # fmt: skip
        self.weights, self.resume = os.urandom(2 * OLD_CHUNK + 12_345), os.urandom(5_000)
        self.bundle, self.onnx = os.urandom(OLD_CHUNK + 1), b""  # an empty file too
        self.content = os.urandom(OLD_CHUNK + 7)
        ckpt = Checkpoint(
            job_id=job_id,
            attempt=1,
            step=30,
            epoch=2,
            metrics={},
            is_best=True,
            size_bytes=len(self.weights),
            sha256=hashlib.sha256(self.weights).hexdigest(),
        )
        session.add(ckpt)
        session.add(
            ModelExport(
                job_id=job_id,
                attempt=1,
                status="ready",
                model_metadata={},
                bundle_bytes=len(self.bundle),
                bundle_sha256=sha(self.bundle),
                onnx_bytes=0,
                onnx_sha256=sha(b""),
            )
        )
        dataset = Dataset(
            team_id=team.id,
            name="d",
            format="npz",
            sha256=sha(self.content),
            options_hash="o",
            size_bytes=len(self.content),
            stored_bytes=len(self.content),
            stored_sha256=sha(self.content),
            n_chunks=2,
            task="classification",
            modality="tabular",
            n_samples=1,
            info={},
            options={},
        )
        session.add(dataset)
        session.flush()
        self.checkpoint_id, self.dataset_id = ckpt.id, dataset.id
        insert_rows(
            session,
            "INSERT INTO checkpoint_chunks (checkpoint_id, kind, seq, data) "
            "VALUES (:owner, :kind, :seq, :data)",
            [
                {"owner": ckpt.id, "kind": kind, "seq": seq, "data": data}
                for kind, blob in (("weights", self.weights), ("resume", self.resume))
                for seq, data in old_chunks(blob)
            ],
        )
        insert_rows(
            session,
            "INSERT INTO model_export_chunks (job_id, kind, seq, data) "
            "VALUES (:owner, :kind, :seq, :data)",
            [
                {"owner": job_id, "kind": kind, "seq": seq, "data": data}
                for kind, blob in (("bundle", self.bundle), ("onnx", self.onnx))
                for seq, data in old_chunks(blob)
            ],
        )
        insert_rows(
            session,
            "INSERT INTO dataset_chunks (dataset_id, seq, data) VALUES (:owner, :seq, :data)",
            [
                {"owner": dataset.id, "seq": 0, "data": self.content[:OLD_CHUNK]},
                {"owner": dataset.id, "seq": 1, "data": self.content[OLD_CHUNK:]},
            ],
        )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """An empty PostgreSQL database of its own (the session's pg_url is already migrated)."""
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"tf_blobs_{secrets.token_hex(4)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:  # noqa: BLE001
        service_missing("PostgreSQL at 127.0.0.1:5432")
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    engine_for.cache_clear()  # forget its engines; FORCE below ends their connections
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def old(request: pytest.FixtureRequest, tmp_path: Any) -> tuple[Settings, OldStore]:
    url = request.getfixturevalue("fresh_pg") if request.param == "postgresql" else None
    settings = Settings(home=tmp_path / "home", database_url=url)
    settings.ensure_home()
    upgrade(settings.resolved_database_url, BEFORE_BLOBS)
    with session_factory(settings.resolved_database_url)() as session:
        store = OldStore(session)
        session.commit()
    return settings, store


def test_files_written_before_the_blob_store_download_byte_identical_after_it(
    old: tuple[Settings, OldStore],
) -> None:
    settings, store = old
    upgrade(settings.resolved_database_url)
    app = create_app(settings, queue=FakeQueue(settings))
    with TestClient(app, headers={"Authorization": f"Bearer {store.key}"}) as client:
        base = f"/v1/jobs/{store.job_id}"
        r = client.get(f"{base}/checkpoints/{store.checkpoint_id}/download")
        assert r.status_code == 200, r.text
        assert r.content == store.weights
        assert r.headers["x-checksum-sha256"] == sha(r.content)
        r = client.get(f"{base}/model")
        assert r.status_code == 200, r.text
        assert r.content == store.bundle
        assert client.get(f"{base}/model", params={"format": "onnx"}).content == b""
    with session_factory(settings.resolved_database_url)() as session:
        ref = blobs.BlobRef("checkpoint", store.checkpoint_id, "resume")
        assert blobs.read(session, ref) == store.resume
        dataset = session.get(Dataset, store.dataset_id)
        assert dataset is not None
        assert datasets_repo.read_content(session, dataset) == store.content
        # The quota counts the moved chunks: checkpoints and datasets, not exports.
        usage = storage_repo.usage(session, store.team_id)
        assert usage.checkpoint_bytes == len(store.weights) + len(store.resume)
        assert usage.dataset_bytes == len(store.content)
        # Deleting the ended job still takes its files with it (the cascades moved too).
        assert storage_repo.delete_ended_job(session, store.job_id)
        session.commit()
        assert storage_repo.usage(session, store.team_id).checkpoint_bytes == 0


def test_downgrade_puts_every_chunk_back_where_it_was(old: tuple[Settings, OldStore]) -> None:
    settings, _ = old
    url = settings.resolved_database_url
    factory = session_factory(url)

    def old_tables() -> list[Any]:
        with factory() as session:
            return [
                session.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2, 3")).all()
                for table in ("checkpoint_chunks", "model_export_chunks", "dataset_chunks")
            ]

    before = old_tables()
    upgrade(url)
    command.downgrade(alembic_config(url), BEFORE_BLOBS)
    assert old_tables() == before
