"""``python -m api.openapi_dump > openapi.json`` (``make openapi``): the contract the app
serves (``api.openapi_contract``), pretty-printed, as committed."""

from __future__ import annotations

import json
import sys

from fastapi import FastAPI

from api.app import create_app
from api.openapi_contract import Document
from api.settings import Settings


class _NoQueue:
    """The dump builds the app without a broker; nothing is ever published."""

    def publish(self, job_id: str, queue: str) -> None:
        raise RuntimeError("the OpenAPI dump publishes nothing")

    def ping(self) -> None:
        return None


def build_app() -> FastAPI:
    """The app as served, with an in-memory database URL and no broker (nothing connects)."""
    return create_app(Settings(database_url="sqlite://", broker_url="memory://"), queue=_NoQueue())


def render(document: Document) -> str:
    """The committed form: pretty-printed, sorted keys, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    sys.stdout.buffer.write(render(build_app().openapi()).encode("utf-8"))


if __name__ == "__main__":
    main()
