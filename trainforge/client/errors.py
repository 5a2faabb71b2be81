"""Exit codes of the user CLI, and the one exception that carries them to the top."""

from __future__ import annotations

EXIT_OK = 0  # the command did what was asked; for a followed job: it succeeded
EXIT_JOB_FAILED = 1  # the job failed or was canceled (or a download did not check out)
EXIT_INVALID = 2  # invalid input: a spec the API refused (422), an unknown job, bad options
EXIT_UNREACHABLE = 3  # the server cannot be reached, or it refused the API key
EXIT_DETACHED = 130  # Ctrl-C: detached from the job, which keeps running


class CliError(Exception):
    """A user-facing failure: ``message`` is printed (no traceback), ``code`` is the exit code."""

    def __init__(self, code: int, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.http_status = code, message, http_status
