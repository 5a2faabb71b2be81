"""Trainforge's client: ``from trainforge import Client`` (the SDK, trainforge/sdk) and the
``trainforge`` command (trainforge/entry.py). Importing it loads no server code."""

from trainforge.sdk import *  # noqa: F403 - the SDK is the package's API
from trainforge.sdk import __all__ as _sdk_all
from trainforge.version import __version__

__all__ = ["__version__", *_sdk_all]
