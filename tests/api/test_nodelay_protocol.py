"""`trainforge api` turns Nagle off on every connection (api/nodelay_protocol.py, issue 16).

With `--processes` above 1 uvicorn binds its listening socket with ``proto`` 0, and
asyncio then leaves TCP_NODELAY off on what it accepts: each keep-alive request waited
~40 ms for a delayed ACK. The socket here is made the way uvicorn makes it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from api.nodelay_protocol import NoDelayHTTPProtocol, set_nodelay
from api.settings import get_settings


class _Transport(asyncio.BaseTransport):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default


@contextmanager
def _accepted_like_uvicorn_workers() -> Iterator[socket.socket]:
    listener = socket.socket(family=socket.AF_INET, type=socket.SOCK_STREAM)  # proto 0
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        yield accepted
    finally:
        for s in (accepted, client, listener):
            s.close()


def _nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_connection_accepted_on_a_proto_0_socket_gets_tcp_nodelay() -> None:
    with _accepted_like_uvicorn_workers() as sock:
        assert sock.proto == 0 and _nodelay(sock) == 0  # what asyncio would leave alone
        set_nodelay(_Transport(sock))
        assert _nodelay(sock) != 0


def test_trainforge_api_serves_with_that_protocol_and_its_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    from trainforge.entry import main

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path))
    monkeypatch.setenv("TRAINFORGE_API_PROCESSES", "3")
    # Unset for cmd_api, and restored (removed) after the test, which cmd_api sets.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    stale = tmp_path / "api-metrics" / "counter_1.db"
    stale.parent.mkdir()
    stale.write_bytes(b"an earlier run's")
    get_settings.cache_clear()
    try:
        assert main(["api", "--port", "8123"]) == 0
        assert main(["api", "--processes", "2"]) == 0
    finally:
        get_settings.cache_clear()
    assert [c["workers"] for c in calls] == [3, 2]
    # One /metrics for the processes: prometheus-client's shared folder, emptied at start.
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "api-metrics")
    assert list((tmp_path / "api-metrics").iterdir()) == []
    config = uvicorn.Config("api.app:create_app", factory=True, http=calls[0]["http"])
    config.load()
    assert config.http_protocol_class is NoDelayHTTPProtocol
