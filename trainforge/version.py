"""The package's version, one place: the SDK, the CLI and the build (pyproject) read it."""

__version__ = "0.2.0"
