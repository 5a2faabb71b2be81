"""A Server-Sent Events reader (the subset the API sends: event, data, id, comments)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    id: int | None


def parse(lines: Iterable[str]) -> Iterator[Event]:
    kind, event_id = "message", None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                payload = json.loads("\n".join(data))
                yield Event(kind, payload if isinstance(payload, dict) else {}, event_id)
            kind, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id" and value.isdigit():
            event_id = int(value)
