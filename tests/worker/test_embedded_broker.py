"""The embedded broker (api/broker.py): what the API publishes, the worker's app receives."""

from __future__ import annotations

import os
from pathlib import Path

from api.queue import RUN_JOB_TASK, CeleryJobQueue
from api.settings import Settings
from worker.celery_app import make_celery


def test_a_published_doorbell_is_received_whole_by_the_workers_connection(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path)
    settings.ensure_home()
    assert settings.broker_transport_options()["polling_interval"] == 0.05
    CeleryJobQueue(settings).publish("job-1", settings.queue)
    queue_folder = Path(settings.broker_transport_options()["data_folder_in"])
    # Written under a hidden name and renamed: only the finished message is in the folder.
    assert [n for n in os.listdir(queue_folder) if not n.endswith(".msg")] == []

    app = make_celery(settings)
    with app.connection_for_read() as conn:
        assert type(conn.transport).__module__ == "api.broker"
        simple = conn.SimpleQueue(settings.queue)
        message = simple.get(timeout=5)
        assert message.headers["task"] == RUN_JOB_TASK
        assert message.payload[0] == ["job-1"]  # (args, kwargs, embed)
        message.ack()
        simple.close()


def test_a_half_written_file_is_not_taken(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.ensure_home()
    queue_folder = Path(settings.broker_transport_options()["data_folder_in"])
    (queue_folder / ".0123abcd.part").write_bytes(b'{"body": ')  # a writer in progress
    app = make_celery(settings)
    with app.connection_for_read() as conn:
        simple = conn.SimpleQueue(settings.queue)
        assert simple.qsize() == 0
        simple.close()
    assert (queue_folder / ".0123abcd.part").exists()


def test_other_brokers_keep_their_own_transport() -> None:
    settings = Settings(broker_url="redis://127.0.0.1:6379/0")
    assert settings.broker_transport is None
    assert "polling_interval" not in settings.broker_transport_options()
