"""One look at the events table per tick and API process, however many streams are open.

Each SSE stream used to query the table every 0.25 s: 100 idle streams were 400
queries a second, and the thread pool and the database spent their time saying
"nothing new". Now a stream reads its own page only when the hub has seen a new
event of its job (or after a fallback timeout). The hub's single query reads the
ids and job ids of the events written since its last look.

The hub runs as a task of the running event loop while anyone waits, and stops
when the last stream has gone, so nothing outlives the server (or a test client).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import anyio
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db.events import JobEvent as Event

log = logging.getLogger(__name__)
REMEMBERED_JOBS = 10_000  # the latest event id of this many recently active jobs
PAGE = 5_000


class EventHub:
    def __init__(self, factory: sessionmaker[Session], tick_seconds: float) -> None:
        self.factory, self.tick = factory, tick_seconds
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._latest: OrderedDict[str, int] = OrderedDict()  # job -> newest event id seen
        self._last_id: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self.polls = 0  # for tests: how many times the table was read

    async def wait(self, job_id: str, cursor: int, timeout: float) -> None:
        """Returns when the job has an event after ``cursor`` (as far as the hub has
        seen), or after ``timeout`` seconds: the caller then reads its page."""
        if self._latest.get(job_id, 0) > cursor:
            return  # written after the caller's last read, seen before it waited
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        self._ensure_poller()
        try:
            with anyio.move_on_after(timeout):
                await event.wait()
        finally:
            waiting = self._waiters.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[job_id]

    def _ensure_poller(self) -> None:
        loop = asyncio.get_running_loop()
        if self._poller is None or self._poller.done() or self._poller.get_loop() is not loop:
            self._poller = loop.create_task(self._poll())

    async def _poll(self) -> None:
        while self._waiters:
            try:
                seen, self._last_id = await anyio.to_thread.run_sync(self._read, self._last_id)
                wake = set(seen)
            except Exception:  # the database may be away; the streams retry
                log.warning("event hub: could not read the events table", exc_info=True)
                seen, wake = {}, set(self._waiters)  # wake all: they read (and report) it
            for job_id, newest in seen.items():
                self._latest[job_id] = max(newest, self._latest.get(job_id, 0))
                self._latest.move_to_end(job_id)
            for job_id in wake:
                for event in self._waiters.get(job_id, ()):
                    event.set()
            while len(self._latest) > REMEMBERED_JOBS:
                self._latest.popitem(last=False)
            await asyncio.sleep(self.tick)

    def _read(self, after: int | None) -> tuple[dict[str, int], int | None]:
        self.polls += 1
        with self.factory() as session:
            if after is None:  # the first look: from now on (streams read the past)
                return {}, session.scalar(select(func.max(Event.id))) or 0
            rows = session.execute(
                select(Event.id, Event.job_id)
                .where(Event.id > after)
                .order_by(Event.id)
                .limit(PAGE)
            ).all()
        seen: dict[str, int] = {}
        for event_id, job_id in rows:
            seen[job_id] = event_id
        return seen, rows[-1][0] if rows else after
