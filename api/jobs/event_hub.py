"""One look at the events table per tick and API process, however many streams are open.

Each SSE stream used to query the table every 0.25 s: 100 idle streams were 400
queries a second, and the thread pool and the database spent their time saying
"nothing new". Now a stream reads its own page only when the hub has seen a new
event of its job (or after a fallback timeout). The hub's single query reads the
ids and job ids of the events written since its last look.

The hub runs as a task of the running event loop while anyone waits, and stops
when the last stream has gone, so nothing outlives the server (or a test client).

Late commits: event ids come from a sequence, so a transaction may take id 100, another
id 101 and commit first; a look that read up to 101 would never see 100. The hub keeps the
ids it skipped over for ``GAP_SECONDS`` and asks for them again at every tick (most are
ids of rolled-back transactions and never come), so such an event wakes its streams
within a tick too, not at their fallback read (issue 28, 13).

Revocation (issue 28, finding 9): the same tick also reads which API keys were
revoked (or expired) in the last few seconds, in any process; when one was, every
waiting stream wakes and the streams of that key close. A revoked key's streams
close within one tick plus a page read: under a second (``KEY_WINDOW`` covers ticks
missed while the database was away or clocks differ a little).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import timedelta

import anyio
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import utcnow
from api.ledger.events import JobEvent as Event
from api.teams.models import ApiKey

log = logging.getLogger(__name__)
REMEMBERED_JOBS = 10_000  # the latest event id of this many recently active jobs
PAGE = 5_000
KEY_WINDOW = timedelta(seconds=10)  # revocations this recent are read at every tick
REMEMBERED_KEYS = 10_000
GAP_SECONDS = 5.0  # an id skipped over is asked for again for this long (a late commit)
REMEMBERED_GAPS = 2_000


class EventHub:
    def __init__(self, factory: sessionmaker[Session], tick_seconds: float) -> None:
        self.factory, self.tick = factory, tick_seconds
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._latest: OrderedDict[str, int] = OrderedDict()  # job -> newest event id seen
        self._last_id: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self._revoked: OrderedDict[str, None] = OrderedDict()  # key ids seen revoked/expired
        self._gaps: OrderedDict[int, float] = OrderedDict()  # id skipped -> asked for until
        self.polls = 0  # for tests: how many times the table was read

    def is_revoked(self, key_id: str) -> bool:
        """Whether the hub has seen ``key_id`` revoked or expired (streams then close)."""
        return key_id in self._revoked

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
                revoked = await anyio.to_thread.run_sync(self._read_revoked)
                if revoked - self._revoked.keys():
                    wake = set(self._waiters)  # each stream checks its own key
                for key_id in revoked:
                    self._revoked[key_id] = None
                while len(self._revoked) > REMEMBERED_KEYS:
                    self._revoked.popitem(last=False)
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
        now = time.monotonic()
        while self._gaps and next(iter(self._gaps.values())) < now:
            self._gaps.popitem(last=False)
        gaps = list(self._gaps)
        with self.factory() as session:
            if after is None:  # the first look: from now on (streams read the past)
                return {}, session.scalar(select(func.max(Event.id))) or 0
            wanted = Event.id > after
            if gaps:
                wanted = or_(wanted, Event.id.in_(gaps))
            rows = session.execute(
                select(Event.id, Event.job_id).where(wanted).order_by(Event.id).limit(PAGE)
            ).all()
        seen: dict[str, int] = {}
        newest, fresh = after, []
        for event_id, job_id in rows:
            seen[job_id] = max(event_id, seen.get(job_id, 0))
            if event_id > after:
                fresh.append(event_id)
                newest = max(newest, event_id)
            else:
                self._gaps.pop(event_id, None)  # a late commit, found
        expected = after + 1
        for event_id in fresh:  # ids skipped over: a transaction that may still commit
            for missing in range(expected, min(event_id, expected + REMEMBERED_GAPS)):
                self._gaps[missing] = now + GAP_SECONDS
            expected = event_id + 1
        while len(self._gaps) > REMEMBERED_GAPS:
            self._gaps.popitem(last=False)
        return seen, newest

    def _read_revoked(self) -> set[str]:
        """Keys revoked, or expired, within the last ``KEY_WINDOW`` (any API process)."""
        now = utcnow()
        since = now - KEY_WINDOW
        with self.factory() as session:
            rows = session.scalars(
                select(ApiKey.id).where(
                    or_(
                        ApiKey.revoked_at >= since,
                        ApiKey.expires_at.between(since, now),
                    )
                )
            ).all()
        return set(rows)
