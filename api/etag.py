"""ETag / If-None-Match for the reads a dashboard polls (issue 28, finding 13).

The tag is a hash of the caller's team and the exact body, so it changes whenever anything
shown changes, and a tag minted for one team never matches for another (a 304 is never an
answer across teams). A match is a ``304 Not Modified`` without a body: the poller keeps
what it has, and neither side serialises, sends or parses the page again.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import Response

ETAG_HEADER = {
    "ETag": {
        "description": "The answer's version: send it back in If-None-Match to get a 304 "
        "while it is current.",
        "schema": {"type": "string"},
    }
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {
        "description": "Not modified: the If-None-Match sent names the current ETag (no body).",
        "headers": ETAG_HEADER,
    }
}
IF_NONE_MATCH_DESCRIPTION = (
    "ETags of answers already held (comma-separated, or `*`): a 304 without a body when one "
    "is current."
)


def etag(team_id: str, body: bytes) -> str:
    digest = hashlib.sha256(team_id.encode() + b"\0" + body).hexdigest()[:32]
    return f'"{digest}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """RFC 9110's weak comparison of If-None-Match against the current tag."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False


def conditional_json(
    body: bytes,
    team_id: str,
    if_none_match: str | None,
    headers: dict[str, str] | None = None,
    tag: str | None = None,
) -> Response:
    """A 200 with ``body`` and its ETag (``tag``: computed already), or a 304 when the
    caller holds it already."""
    tag = tag or etag(team_id, body)
    # A browser may keep the answer but must ask again each time (so a dashboard's fetch
    # revalidates with If-None-Match by itself); no shared cache may keep a team's answer.
    out = {**(headers or {}), "ETag": tag, "Cache-Control": "private, no-cache"}
    if matches(if_none_match, tag):
        return Response(status_code=304, headers=out)
    return Response(body, 200, out, "application/json")
