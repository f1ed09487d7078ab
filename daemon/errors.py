"""The daemon's own exceptions: what its inner parts (worker, store, watcher) raise when a request cannot be served.

They are ordinary exceptions; the server maps them to the protocol's error replies at its edge (`wire_error`), so
nothing inside the daemon builds a wire error. Each class names its error code (ase_daemon.contract) and carries
that code's extra fields (retry_after, sizes).
"""

from __future__ import annotations

from .contract import (
    BAD_IMAGE,
    BAD_REQUEST,
    BUSY,
    CANCELLED,
    INTERNAL,
    NOT_FOUND,
    NOT_READY,
    TOO_LARGE,
    ProtocolError,
    WireError,
)

__all__ = ["DaemonFault", "Busy", "NotReady", "Cancelled", "NotFound", "BadImage", "TooLarge", "BadArgument",
           "ModelFailure", "QueueFull", "wire_error"]


class DaemonFault(Exception):
    """A request the daemon cannot serve; `code` is the protocol's error code for it.

    Args:
        message: for people (names the file or the limit).
        **fields: the code's extra fields (contract.ERROR_FIELDS).
    """

    code = INTERNAL

    def __init__(self, message: str, **fields):
        super().__init__(message)
        self.message, self.fields = message, fields


class Busy(DaemonFault):
    """The interactive queue (or the job table) is full."""

    code = BUSY

    def __init__(self, message: str, retry_after: float):
        super().__init__(message, retry_after=round(retry_after, 2))


class NotReady(DaemonFault):
    """The model is loading, unloaded or failed; `retry_after` when a retry can succeed."""

    code = NOT_READY

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message, **({"retry_after": round(retry_after, 2)} if retry_after is not None else {}))


class Cancelled(DaemonFault):
    """Cancelled by a client, or by the daemon's shutdown."""

    code = CANCELLED


class NotFound(DaemonFault):
    """No such file, folder or job."""

    code = NOT_FOUND


class BadImage(DaemonFault):
    """The image cannot be read or decoded."""

    code = BAD_IMAGE


class TooLarge(DaemonFault):
    """The file or its decoding is over a limit (fields: needed_mb/limit_mb or pixels/limit_pixels)."""

    code = TOO_LARGE


class BadArgument(DaemonFault):
    """An argument the inner part cannot use (e.g. a watched "folder" that is a file)."""

    code = BAD_REQUEST


class ModelFailure(DaemonFault):
    """The model failed on an image (a bug or a broken model; the daemon's log has the traceback)."""

    code = INTERNAL


class QueueFull(Exception):
    """The job table holds max_jobs queued jobs (the server answers `busy`; the watcher waits and tries again)."""


def wire_error(exc: BaseException) -> WireError:
    """The error reply for an exception that ended a request: a DaemonFault or ProtocolError keeps its code and
    fields; anything else is a bug, answered `internal`.

    Args:
        exc: the exception.
    """
    if isinstance(exc, DaemonFault):
        fields = dict(exc.fields)
        return WireError(exc.code, exc.message, fields.pop("retry_after", None), fields)
    if isinstance(exc, ProtocolError):
        fields = dict(exc.extra)
        return WireError(exc.code, exc.message, fields.pop("retry_after", None), fields)
    return WireError(INTERNAL, f"{type(exc).__name__}: {exc}")
