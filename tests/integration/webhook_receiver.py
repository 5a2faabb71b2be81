"""A real local HTTP receiver for webhook tests: it verifies every delivery's signature with
the `standardwebhooks` package (not the project's code) and fails the first attempts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from tests.conftest import free_port


@dataclass
class Receiver:
    url: str
    fail_first: int = 2
    secret: str | None = None
    attempts: dict[str, int] = field(default_factory=dict)  # webhook-id -> attempts seen
    accepted: list[dict[str, Any]] = field(default_factory=list)  # payloads answered 200
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        assert self.secret is not None
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except Exception:  # noqa: BLE001 - any verification failure is a 400
            with self.lock:
                self.bad_signatures += 1
            return 400
        msg_id = headers["webhook-id"]
        with self.lock:
            n = self.attempts[msg_id] = self.attempts.get(msg_id, 0) + 1
            if n <= self.fail_first:
                return 500
            if all(a["_id"] != msg_id for a in self.accepted):  # receivers dedupe by id
                self.accepted.append({**payload, "_id": msg_id})
        return 200

    def accepted_types(self, job_id: str) -> list[str]:
        with self.lock:
            return sorted(a["type"] for a in self.accepted if a["data"].get("job_id") == job_id)


@contextmanager
def receiver(fail_first: int = 2) -> Iterator[Receiver]:
    port = free_port()
    state = Receiver(url=f"http://127.0.0.1:{port}/hook", fail_first=fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            code = state.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"ok": code == 200}).encode())

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
