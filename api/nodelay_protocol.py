"""How `trainforge api` serves: uvicorn's HTTP/1.1 protocol with TCP_NODELAY always on.

asyncio turns Nagle's algorithm off only on sockets that say they are TCP
(``proto == IPPROTO_TCP``). With ``--processes`` above 1, uvicorn binds the listening
socket itself with ``proto`` 0 and hands it to its worker processes, so every accepted
connection kept Nagle on: a keep-alive client waited for the peer's delayed ACK, about
40 ms a request (``GET /healthz`` fell from ~800/s to ~180/s; issue 16).
"""

from __future__ import annotations

import asyncio
import socket
from contextlib import suppress

from uvicorn.protocols.http.h11_impl import H11Protocol


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with suppress(OSError):  # a peer that already left
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHTTPProtocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


HTTP_PROTOCOL = f"{__name__}:{NoDelayHTTPProtocol.__name__}"
