"""The database gate's decisions without a broker (issue 28, finding 12): the consumer's
queues are cancelled when the database becomes unusable and added back when it is
usable again; the task gives a message back while the gate is closed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from celery.exceptions import Reject

from api.settings import Settings
from worker import database_gate
from worker.database_gate import DatabaseGate


class FakeConsumer:
    """What the gate uses of Celery's consumer: call_soon, the queue list, cancel/add."""

    def __init__(self, queues: list[str]) -> None:
        self.consuming = set(queues)
        self.app = self
        self.amqp = self
        self.queues = self
        self.pending: list[Callable[[], Any]] = []

    @property
    def consume_from(self) -> dict[str, object]:
        return dict.fromkeys(self.consuming)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.pending.append(lambda: fn(*args))

    def run_pending(self) -> None:
        while self.pending:
            self.pending.pop(0)()

    def cancel_task_queue(self, queue: str) -> None:
        self.consuming.discard(queue)

    def add_task_queue(self, queue: str) -> None:
        self.consuming.add(queue)


def _revision(settings: Settings, revision: str) -> None:
    with sqlite3.connect(settings.resolved_database_url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


def test_the_gate_stops_and_resumes_consuming(settings: Settings) -> None:
    gate = DatabaseGate(settings, [settings.queue])
    consumer = FakeConsumer([settings.queue])
    gate.attach(consumer)
    assert gate.check() is None and consumer.pending == []
    head = gate._head
    assert head is not None
    _revision(settings, "3295140b53bf")
    assert "3295140b53bf" in (gate.check() or "")
    consumer.run_pending()
    assert consumer.consuming == set()
    consumer = FakeConsumer([settings.queue])  # a restarted consumer is closed at once too
    gate.attach(consumer)
    consumer.run_pending()
    assert consumer.consuming == set()
    _revision(settings, head)
    assert gate.check() is None
    consumer.run_pending()
    assert consumer.consuming == {settings.queue}


def test_a_message_taken_while_the_gate_is_closed_goes_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.tasks import run_job_task

    gate = DatabaseGate(settings, [settings.queue])
    gate.problem = "the database is unreachable (OperationalError: ...)"
    monkeypatch.setattr(database_gate, "GATE", [gate])
    with pytest.raises(Reject) as raised:
        run_job_task("some-job")
    assert raised.value.requeue
