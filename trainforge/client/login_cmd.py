"""login: remember the server's URL and an API key in ~/.config/trainforge/config.toml."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from trainforge.client import output
from trainforge.client.config import Config, config_path
from trainforge.client.config import save as save_config


def login(
    url: Annotated[str, typer.Option(help="The Trainforge API, e.g. https://trainforge.example")],
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="The key (default: TRAINFORGE_API_KEY, else asked for, without echo).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Where it was saved, as JSON.")] = False,
) -> None:
    """Check a key against the server, then store URL and key (file mode 0600)."""
    key = (
        api_key or os.environ.get("TRAINFORGE_API_KEY") or typer.prompt("API key", hide_input=True)
    )
    config = Config(url.rstrip("/"), key.strip(), "the key given to login")
    api = output.Api(config)
    try:
        api.get_json("/v1/jobs", params={"limit": 1})  # 401 / unreachable: exit 3, nothing saved
    finally:
        api.close()
    path = config_path()
    save_config(path, config.url, config.api_key or "")
    if as_json:
        output.print_json({"url": config.url, "config": str(path)})
    else:
        print(f"logged in to {config.url}; saved to {path} (mode 0600)")


def register(app: typer.Typer) -> None:
    app.command()(login)
