"""The small, typed exception tree of storycheck.

Two families:

* :class:`InputError` for bad files and settings given by the operator. Its ``str`` is the
  one line the CLI prints: ``FILE:LINE: reason``.
* :class:`CheckError` for a story check that did not produce a parsed, valid answer.
  Every subclass has a stable ``kind`` stored in ``job.error_kind`` and shown in summaries.
"""

from __future__ import annotations

from storycheck_tui.states import ErrorKind


class StorycheckError(Exception):
    """Base of every error storycheck raises on purpose."""


class InputError(StorycheckError):
    """An operator-supplied file or value is invalid.

    ``str(err)`` is ``FILE:LINE: reason`` (or ``FILE: reason`` when no line applies).
    """

    def __init__(self, reason: str, *, source: str | None = None, line: int | None = None):
        self.reason = reason
        self.source = source
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.source and self.line:
            return f"{self.source}:{self.line}: {self.reason}"
        if self.source:
            return f"{self.source}: {self.reason}"
        return self.reason


class InputErrors(StorycheckError):
    """Several :class:`InputError` from one file; ``str`` lists them one per line."""

    def __init__(self, errors: list[InputError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class DatabaseError(StorycheckError):
    """The database cannot be opened or used; the message says which and why."""


class CheckError(StorycheckError):
    """A story check failed. ``kind`` is stored as ``job.error_kind``."""

    kind: ErrorKind = ErrorKind.ERROR
    #: transient errors are retried by the checker; the others end the check at once.
    transient = False
    #: requests the claim sent before it handed its job back with this error (the checker sets it)
    requests_sent = 0

    def __init__(self, message: str, *, status: int | None = None, proxy: str | None = None):
        self.message = message
        self.status = status
        self.proxy = proxy  # masked label, never the URL with credentials
        super().__init__(message)


class RateLimited(CheckError):
    """The source answered "too many requests" for this identity (proxy or direct)."""

    kind = ErrorKind.RATE_LIMITED
    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ProxyFailed(CheckError):
    """The proxy, not the source, failed: connect error, 407, tunnel error, ban."""

    kind = ErrorKind.PROXY_FAILED
    transient = True


class ProxyAuthRejected(ProxyFailed):
    """The proxy refused its credentials (407, a SOCKS5 username/password failure): unlike
    other proxy failures, it will not heal by itself."""


class SourceUnavailable(CheckError):
    """The source failed: 5xx, timeout, connection reset."""

    kind = ErrorKind.SOURCE_UNAVAILABLE
    transient = True


class BadResponse(CheckError):
    """The source answered, but not with a valid body (bad JSON, wrong shape, too large)."""

    kind = ErrorKind.BAD_RESPONSE
    transient = True


class AuthFailed(CheckError):
    """The source refused our credentials (401/402): retrying is pointless, pause the batch."""

    kind = ErrorKind.AUTH_FAILED


class NoProxyAvailable(CheckError):
    """Every proxy is cooling, dead, disabled or auth_rejected; the job goes back to the queue."""

    kind = ErrorKind.NO_PROXY


class CircuitOpen(CheckError):
    """The source is down for many profiles at once: no check is sent, the job goes back to
    the queue with no attempt spent (see engine/breaker.py)."""

    kind = ErrorKind.CIRCUIT_OPEN


class Unexpected(CheckError):
    """A bug or an error nobody planned for; carries the traceback in the log."""

    kind = ErrorKind.UNEXPECTED
