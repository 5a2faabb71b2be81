"""The CLI's server and key: the SDK's rules (trainforge/sdk/config.py), re-exported."""

from trainforge.sdk.config import (
    DEFAULT_URL,
    Config,
    config_path,
    home_key_file,
    read_config_file,
    resolve,
    save,
)

__all__ = [
    "DEFAULT_URL",
    "Config",
    "config_path",
    "home_key_file",
    "read_config_file",
    "resolve",
    "save",
]
