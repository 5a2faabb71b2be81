"""Where the SDK and the CLI find the server and the API key.

URL: ``TRAINFORGE_URL``, else ``url`` in the config file, else ``http://127.0.0.1:8000``.
Key: ``TRAINFORGE_API_KEY``, else ``api_key`` in the config file, else the file
``$TRAINFORGE_HOME/api-key`` (``./.trainforge/api-key``) that ``trainforge up`` writes, so
the first job on the machine that runs ``make run`` needs no setup. The config file is
``$XDG_CONFIG_HOME/trainforge/config.toml`` (``~/.config/trainforge/config.toml``), written
by ``trainforge login`` with mode 0600.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from trainforge.sdk.errors import InvalidInput

if sys.version_info >= (3, 11):  # noqa: UP036 - the client runs on 3.10 too
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Config:
    url: str
    api_key: str | None
    key_source: str  # where the key came from, for the message when it is refused


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "trainforge" / "config.toml"


def read_config_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    return {k: v for k, v in data.items() if isinstance(v, str)}


def home_key_file(env: Mapping[str, str]) -> Path:
    return Path(env.get("TRAINFORGE_HOME") or ".trainforge") / "api-key"


def resolve(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    path = config_path(env)
    stored = read_config_file(path)
    url = env.get("TRAINFORGE_URL") or stored.get("url") or DEFAULT_URL
    if env.get("TRAINFORGE_API_KEY"):
        return Config(url.rstrip("/"), env["TRAINFORGE_API_KEY"].strip(), "TRAINFORGE_API_KEY")
    if stored.get("api_key"):
        return Config(url.rstrip("/"), stored["api_key"].strip(), str(path))
    key_file = home_key_file(env)
    try:
        key = key_file.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        key = None
    source = str(key_file) if key else "nowhere (no TRAINFORGE_API_KEY, login or api-key file)"
    return Config(url.rstrip("/"), key, source)


def save(path: Path, url: str, api_key: str) -> None:
    """Write the config file, readable by its owner alone (0600, also when it existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # json.dumps of a str is a valid TOML basic string.
    text = f"url = {json.dumps(url)}\napi_key = {json.dumps(api_key)}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)
