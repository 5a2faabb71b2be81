"""A Server-Sent Events reader (the subset the API sends: event, data, id, comments), for
lines from a sync or an async stream (one ``Parser`` under both)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    id: int | None


@dataclass
class Parser:
    """Fed one line at a time; returns an event at each blank line that ends one."""

    kind: str = "message"
    event_id: int | None = None
    data: list[str] = field(default_factory=list)

    def feed(self, raw: str) -> Event | None:
        line = raw.rstrip("\r\n")
        if not line:
            event = None
            if self.data:
                payload = json.loads("\n".join(self.data))
                event = Event(self.kind, payload if isinstance(payload, dict) else {},
                              self.event_id)  # fmt: skip
            self.kind, self.data, self.event_id = "message", [], None
            return event
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.kind = value
        elif name == "data":
            self.data.append(value)
        elif name == "id" and value.isdigit():
            self.event_id = int(value)
        return None


def parse(lines: Iterable[str]) -> Iterator[Event]:
    parser = Parser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


async def aparse(lines: AsyncIterable[str]) -> AsyncIterator[Event]:
    parser = Parser()
    async for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
