"""Project exceptions: each carries the exit code the CLI turns it into, and a message that says what to do."""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_FLAGGED = 3
EXIT_NOTHING_FOUND = 4  # no image under the paths given: nothing assessed, earlier reports kept
EXIT_INTERRUPTED = 130


class IqaError(Exception):
    """An error the user can act on; the CLI prints its message on one line and exits with `exit_code`."""

    exit_code = EXIT_FAILURE


class UsageError(IqaError):
    """The command line or configuration asks for something that cannot be done."""

    exit_code = EXIT_USAGE


class EngineUnavailable(UsageError):
    """The requested engine is not installed or cannot be set up (missing extra, missing model files)."""


class ModelFilesError(IqaError):
    """Model files are missing, partial or of the wrong shape; the message names what is wrong."""


def first_line(value: object, limit: int = 300) -> str:
    """The first non-empty line of an exception or message, trimmed to `limit` characters: what fits in
    a one-line error that says what went wrong."""
    for line in str(value).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(value).__name__
