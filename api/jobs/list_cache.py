"""Job-list pages reused while nothing they show has changed (issue 28, finding 13).

A dashboard polls ``GET /v1/jobs`` every 2 s, and 200 of them poll the same few pages:
building a page (two queries, the summaries, their JSON and ETag) ~100 times a second
for answers that change a few times a second was most of what one API process did.

Every change a page shows is written together with an event in the same transaction
(a status change, progress, a metric batch: ``api.ledger.events``), so the newest event
id is the version of every page: one index-only read, and while it has not moved the
bytes (and ETag) built for it are the answer. What an event does not mark:

- a write through this process that deletes (``DELETE /v1/jobs/{id}`` takes the job's
  events with it): :class:`WriteInvalidation` forgets every page when any non-read
  request starts its answer, i.e. after its commit and before its client can ask again;
- such a write through another API process, or an event whose transaction got its id
  before a later one but committed after it: a page is never older than ``MAX_AGE``.

A page is stored under the generation and version read *before* it was built, so a page
built while a write commits is never taken for one built after it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_AGE = 5.0  # seconds: the bound on staleness for what no event marks
SIZE = 512  # pages kept (team × filters × cursor)
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Page:
    generation: int
    version: int
    built_at: float
    body: bytes
    etag: str


class ListCache:
    def __init__(self, size: int = SIZE, max_age: float = MAX_AGE) -> None:
        self.size, self.max_age = size, max_age
        self.generation = 0
        self._pages: OrderedDict[Hashable, Page] = OrderedDict()
        self._lock = threading.Lock()  # the endpoint runs in the thread pool
        self.hits = self.misses = 0  # for tests and the benchmark

    def invalidate(self) -> None:
        with self._lock:
            self.generation += 1
            self._pages.clear()

    def get(self, key: Hashable, version: int) -> Page | None:
        with self._lock:
            page = self._pages.get(key)
            fresh = (
                page is not None
                and page.generation == self.generation
                and page.version == version
                and time.monotonic() - page.built_at < self.max_age
            )
            if fresh:
                self.hits += 1
                self._pages.move_to_end(key)
                return page
            self.misses += 1
            return None

    def put(self, key: Hashable, page: Page) -> None:
        with self._lock:
            if page.generation != self.generation:
                return  # a write committed while it was built
            self._pages[key] = page
            self._pages.move_to_end(key)
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)


class WriteInvalidation:
    """Pure ASGI: a request that is not a read forgets every cached page as its answer
    starts (its commit is done by then, and its client has not yet seen the answer)."""

    def __init__(self, app: ASGIApp, cache: ListCache) -> None:
        self.app, self.cache = app, cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return
        cache, started = self.cache, False

        async def send_after_forgetting(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                cache.invalidate()
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_after_forgetting)
        finally:
            if not started:  # it failed before answering: what it wrote may be committed
                cache.invalidate()
