"""``trainforge --version``: the client's release and the server's, warning when their major
versions differ (the HTTP API may have changed between them)."""

from __future__ import annotations

import sys

from trainforge.sdk.config import resolve
from trainforge.sdk.errors import TrainforgeError
from trainforge.sdk.transport import Http
from trainforge.version import __version__

TIMEOUT = 3.0


def major(version: str) -> str:
    return version.split(".", 1)[0]


def print_versions() -> None:
    print(f"trainforge {__version__} (client)", flush=True)
    config = resolve()
    http = Http(config, timeout=TIMEOUT, retries=0, user_agent="trainforge-cli")
    try:
        server = str(http.get("/v1/version")["version"])
    except TrainforgeError as exc:
        print(f"server at {config.url}: unknown ({exc.message.splitlines()[0]})", flush=True)
        return
    finally:
        http.close()
    print(f"server {server} at {config.url}", flush=True)
    if major(server) != major(__version__):
        print(
            f"trainforge: warning: the client ({__version__}) and the server ({server}) differ "
            "in major version; install the server's: pip install 'trainforge=="
            f"{server}'",
            file=sys.stderr,
            flush=True,
        )
