"""The ONE logging setup of storycheck.

Every module logs to the ``storycheck`` logger tree. :func:`setup_logging` installs, once
(calling it again adds nothing), three handlers:

* the log file in the platform log dir (or the dir given): owner-only, rotating, written by
  a background thread (see :mod:`storycheck_tui.logfile`);
* a :class:`LogRing`: a bounded in-memory buffer the console drains on a timer;
* a :class:`BatchLogSink`: records carrying ``batch_id`` are queued for the ``batch_log``
  table; the runner's writer (or :meth:`BatchLogSink.flush_to`) stores them.

Records carry structured fields in ``extra``: ``event`` (one of the constants below),
``batch_id``, ``job_id``, ``username``, ``proxy`` (a masked label), ``attempt``,
``status``, ``error_type``, ``details`` (a dict). Use :func:`event` to emit one.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from storycheck_tui.logfile import FileQueue, OwnerOnlyRotatingFile, private_dir
from storycheck_tui.masking import one_line, scrub

LOGGER_NAME = "storycheck"
log = logging.getLogger(LOGGER_NAME)

# Event names (stored in batch_log.event and shown in the console).
STORY_CHECK_STARTED = "STORY_CHECK_STARTED"
STORY_CHECK_SUCCESS = "STORY_CHECK_SUCCESS"
CHECK_FAILED = "CHECK_FAILED"
RETRY_SCHEDULED = "RETRY_SCHEDULED"
RATE_LIMITED = "RATE_LIMITED"
PROXY_FAILOVER = "PROXY_FAILOVER"
PROXY_COOLING = "PROXY_COOLING"
PROXY_DEAD = "PROXY_DEAD"
PROXY_AUTH_REJECTED = "PROXY_AUTH_REJECTED"
PROXY_RECOVERED = "PROXY_RECOVERED"
PROXY_DISABLED = "PROXY_DISABLED"
PROXY_ENABLED = "PROXY_ENABLED"
PROXY_REMOVED = "PROXY_REMOVED"
BATCH_CREATED = "BATCH_CREATED"
BATCH_PAUSED = "BATCH_PAUSED"
BATCH_RESUMED = "BATCH_RESUMED"
BATCH_CANCELLED = "BATCH_CANCELLED"
BATCH_FINISHED = "BATCH_FINISHED"
BATCH_RETRY = "BATCH_RETRY"
LEASE_EXPIRED = "LEASE_EXPIRED"
LEASE_LOST = "LEASE_LOST"
NO_PROXY = "NO_PROXY"
WORKER_STARTED = "WORKER_STARTED"
WORKER_STOPPED = "WORKER_STOPPED"
LOG_FILE_UNSAFE = "LOG_FILE_UNSAFE"

FIELDS = ("event", "batch_id", "job_id", "username", "proxy", "attempt", "status", "error_type", "details")


def event(level: int, name: str, message: str, *, exc_info: Any = None, **fields: Any) -> None:
    """Log one structured record on the ``storycheck`` logger.

    Made as ``Logger.log`` makes it, less the search for the calling frame (``findCaller``):
    no storycheck format shows a record's file, line or function, and that walk up the stack
    was a sixth of the cost of the record the writer logs for every check. The record itself
    is made by :func:`_record`.
    """
    if not log.isEnabledFor(level):
        return
    if exc_info:
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        elif not isinstance(exc_info, tuple):
            exc_info = sys.exc_info()
    fields["event"] = name
    if logging.getLogRecordFactory() is not logging.LogRecord:  # someone's own factory: theirs makes it
        log.handle(log.makeRecord(LOGGER_NAME, level, "(unknown file)", 0, message, (), exc_info or None,
                                  "(unknown function)", fields))
        return
    log.handle(_record(level, message, exc_info or None, fields))


def events(items: list[tuple[int, str, str, dict[str, Any]]]) -> None:
    """Log several structured records, each as :func:`event` logs it, in order; the handlers of
    storycheck that can take many at once (the ring, the batch-log sink, the log file's queue)
    take them in one call: one lock, one queued item (the writer logs a record for every check
    it commits). ``items``: (level, event name, message, fields).
    """
    if log.disabled or log.filters or log.propagate or logging.getLogRecordFactory() is not logging.LogRecord:
        for level, name, message, fields in items:  # as the library does it, record by record
            event(level, name, message, **fields)
        return
    records = []
    for level, name, message, fields in items:
        if log.isEnabledFor(level):
            fields = dict(fields)
            fields["event"] = name
            records.append(_record(level, message, None, fields))
    if not records:
        return
    for handler in log.handlers:
        mine = records if all(r.levelno >= handler.level for r in records) else \
            [r for r in records if r.levelno >= handler.level]
        many = getattr(handler, "handle_many", None)
        if many is not None:
            if mine:
                many(mine)
        else:
            for record in mine:
                handler.handle(record)


#: (pid, the attributes every record of :func:`event` shares): see :func:`_record`
_shared: tuple[int, dict[str, Any]] = (-1, {})
_new_record = logging.LogRecord.__new__


def _record(level: int, message: str, exc_info: Any, fields: dict[str, Any]) -> logging.LogRecord:
    """The ``LogRecord`` that ``makeRecord`` makes for :func:`event`, attribute for attribute, at a
    third of its cost (the writer makes one for every check): the attributes that are the same
    for every record of this process (the file and function it names, the process) are copied
    from one made by ``LogRecord`` itself; the others are set as ``LogRecord.__init__`` sets them.
    """
    global _shared
    pid, shared = _shared
    if pid != os.getpid():  # first record, or a forked child
        proto = logging.LogRecord(LOGGER_NAME, logging.INFO, "(unknown file)", 0, "", (), None, "(unknown function)")
        shared = {k: v for k, v in proto.__dict__.items() if k not in _PER_RECORD}
        _shared = (os.getpid(), shared)
    if not shared.keys().isdisjoint(fields) or "message" in fields or "asctime" in fields:
        raise KeyError(f"Attempt to overwrite {sorted(shared.keys() & fields)} in LogRecord")  # as makeRecord
    record = _new_record(logging.LogRecord)
    attrs = record.__dict__
    attrs.update(shared)
    created = time.time()
    attrs["msg"] = message
    attrs["levelno"] = level
    attrs["levelname"] = logging.getLevelName(level)
    attrs["exc_info"] = exc_info
    attrs["created"] = created
    attrs["msecs"] = int((created - int(created)) * 1000) + 0.0
    attrs["relativeCreated"] = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
    if logging.logThreads:
        attrs["thread"] = threading.get_ident()
        attrs["threadName"] = threading.current_thread().name
    attrs.update(fields)
    return record


#: the attributes of a LogRecord that :func:`_record` sets for each record
_PER_RECORD = frozenset(("msg", "levelno", "levelname", "exc_info", "created", "msecs", "relativeCreated", "thread",
                         "threadName"))


def clean(text: str) -> str:
    """Scrub secrets and escape control characters (``\\n``, ``\\x1b``, ``\\u202e``...), so one
    record is always one line, and a terminal showing it (``tail -f``, stderr) runs no escape
    sequence and reorders no text. Printable text (markup, emoji, any script) is kept as is."""
    return one_line(text)


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """One record as the console and the batch_log table see it (already scrubbed)."""

    seq: int
    created: float
    level: str
    logger: str
    event: str | None
    message: str
    batch_id: int | None = None
    job_id: int | None = None
    username: str | None = None
    proxy: str | None = None
    attempt: int | None = None
    status: int | None = None
    error_type: str | None = None
    details: dict[str, Any] | None = None
    traceback: str | None = None


#: the ring's record numbers; taken under the ring's lock, so their order is the buffer's
_seq = itertools.count(1)


def _clean_opt(value: Any) -> str | None:
    return None if value is None else clean(str(value))


def to_entry(record: logging.LogRecord) -> LogEntry:
    """Turn a record into a scrubbed, structured :class:`LogEntry` (cached on the record)."""
    cached = getattr(record, "_sc_entry", None)
    if cached is not None:
        return cached
    tb = None
    if record.exc_info and record.exc_info[0] is not None:
        tb = scrub("".join(traceback.format_exception(*record.exc_info)))
    details = getattr(record, "details", None)
    entry = LogEntry(
        seq=getattr(record, "_sc_seq", 0),  # the ring's number (LogRing.emit)
        created=record.created,
        level=record.levelname,
        logger=record.name,
        event=getattr(record, "event", None),
        message=clean(record.getMessage()),
        batch_id=getattr(record, "batch_id", None),
        job_id=getattr(record, "job_id", None),
        username=getattr(record, "username", None),
        proxy=_clean_opt(getattr(record, "proxy", None)),  # meant to be a label; a URL must not leak
        attempt=getattr(record, "attempt", None),
        status=getattr(record, "status", None),
        error_type=getattr(record, "error_type", None),
        details={k: (clean(v) if isinstance(v, str) else v) for k, v in details.items()} if isinstance(details, dict) else None,
        traceback=tb,
    )
    record._sc_entry = entry  # type: ignore[attr-defined]
    return entry


_CTX_KEYS = ("batch_id", "job_id", "username", "proxy", "attempt", "status", "error_type")


class LineFormatter(logging.Formatter):
    """``time level event [batch job user proxy] message``: one line per record, scrubbed.

    User text (a username with a newline) is escaped so it cannot forge a line in the
    file; the traceback follows, indented, on lines that start with ``  | ``.
    """

    _stamp: tuple[int, str] = (-1, "")  # (second, its text): one strftime per second, not per record

    def format(self, record: logging.LogRecord) -> str:
        # RotatingFileHandler formats each record twice (shouldRollover, then emit): once is enough
        attrs = record.__dict__  # (a look-up, not getattr: a field a record lacks raises nothing)
        cached = attrs.get("_sc_line")
        if cached is not None:
            return cached
        # A record without a traceback is formatted from its own fields: no LogEntry is built
        # for the file alone (the ring builds one only when the console reads it).
        e = attrs.get("_sc_entry")
        if e is None and record.exc_info and record.exc_info[0] is not None:
            e = to_entry(record)
        second, when = self._stamp
        if second != int(record.created):
            when = self.formatTime(record, "%Y-%m-%d %H:%M:%S")
            self._stamp = (int(record.created), when)
        ctx = []
        fields = attrs if e is None else e.__dict__
        for key in _CTX_KEYS:
            val = fields.get(key)
            if val is not None:
                if key == "proxy" and e is None:
                    val = clean(str(val))  # as to_entry stores it
                ctx.append(f"{key}={val}" if isinstance(val, int) else f"{key}={clean(str(val))}")
        if e is None:
            line = f"{when} {record.levelname:<7} {attrs.get('event') or '-'} {clean(record.getMessage())}"
        else:
            line = f"{when} {e.level:<7} {e.event or '-'} {e.message}"
        if ctx:
            line += " (" + " ".join(ctx) + ")"
        if e is not None and e.traceback:
            line += "\n" + "\n".join("  | " + clean(ln) for ln in e.traceback.rstrip().splitlines())
        record._sc_line = line  # type: ignore[attr-defined]
        return line


class LogRing(logging.Handler):
    """A bounded, thread-safe buffer of recent entries that the console drains by sequence."""

    def __init__(self, capacity: int = 5000) -> None:
        super().__init__(level=logging.DEBUG)
        # (seq, record) pairs: the LogEntry is built when the console reads it (to_entry caches
        # it on the record), not on the logging thread; most records are never read.
        self._buf: collections.deque[tuple[int, logging.LogRecord]] = collections.deque(maxlen=capacity)
        self._lock_ = threading.Lock()

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        ok = bool(self.filter(record))  # no handler lock: emit() locks only the buffer
        if ok:
            self.emit(record)
        return ok

    def handle_many(self, records: list[logging.LogRecord]) -> None:
        """:meth:`handle` for each record, under one taking of the lock."""
        if self.filters:
            records = [r for r in records if self.filter(r)]
        try:
            with self._lock_:
                for record in records:
                    seq = record._sc_seq = next(_seq)  # type: ignore[attr-defined]
                    self._buf.append((seq, record))
            for record in records:
                if record.args or record.exc_info or "details" in record.__dict__:
                    to_entry(record)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(records[0])

    def emit(self, record: logging.LogRecord) -> None:
        try:
            with self._lock_:  # numbered under the buffer's lock: sequence order is buffer order
                seq = record._sc_seq = next(_seq)  # type: ignore[attr-defined]
                self._buf.append((seq, record))
            if record.args or record.exc_info or "details" in record.__dict__:
                to_entry(record)  # its text now: args or details may change, a traceback's frames move on
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)

    @staticmethod
    def _entries(items: list[tuple[int, logging.LogRecord]]) -> list[LogEntry]:
        out = []
        for seq, record in items:
            e = to_entry(record)
            if e.seq != seq:  # built by another handler first: the ring's own number
                e = dataclasses.replace(e, seq=seq)
                record._sc_entry = e  # type: ignore[attr-defined]
            out.append(e)
        return out

    def since(self, seq: int) -> list[LogEntry]:
        """Entries newer than ``seq`` (all of them that are still buffered)."""
        with self._lock_:  # held by every logging thread too: walk back over the new ones only
            items = []
            for it in reversed(self._buf):
                if it[0] <= seq:
                    break
                items.append(it)
        items.reverse()
        return self._entries(items)

    def snapshot(self) -> list[LogEntry]:
        with self._lock_:
            items = list(self._buf)
        return self._entries(items)


class BatchLogSink(logging.Handler):
    """Queues records that belong to a batch for the ``batch_log`` table.

    Records that the writer already stored in the transaction that produced them carry
    ``persisted=True`` and are skipped here.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        super().__init__(level=logging.INFO)
        self._pending: collections.deque[LogEntry] = collections.deque(maxlen=capacity)
        self._lock_ = threading.Lock()

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        ok = bool(self.filter(record))  # no handler lock: emit() locks only the queue
        if ok:
            self.emit(record)
        return ok

    def handle_many(self, records: list[logging.LogRecord]) -> None:
        """:meth:`handle` for each record (those already stored cost a look each)."""
        for record in records:
            if record.__dict__.get("persisted") or record.__dict__.get("batch_id") is None:
                continue
            self.handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "batch_id", None) is None or getattr(record, "persisted", False):
            return
        try:
            entry = to_entry(record)
            with self._lock_:
                self._pending.append(entry)
        except Exception:  # pragma: no cover
            self.handleError(record)

    def drain(self) -> list[LogEntry]:
        with self._lock_:
            items = list(self._pending)
            self._pending.clear()
        return items

    def requeue(self, entries: list[LogEntry]) -> None:
        with self._lock_:
            self._pending.extendleft(reversed(entries))


@dataclasses.dataclass
class Logging:
    """The handlers installed by :func:`setup_logging`."""

    ring: LogRing
    sink: BatchLogSink
    file_path: Path | None
    stderr: logging.Handler | None = None
    #: the rotating file itself (its writes come from the queue's thread); None without a file
    file_handler: logging.Handler | None = None


_setup: Logging | None = None
_setup_lock = threading.Lock()


def default_log_dir() -> Path:
    from platformdirs import user_log_dir

    return Path(os.environ.get("STORYCHECK_LOG_DIR") or user_log_dir("storycheck", appauthor=False))


def setup_logging(log_dir: str | os.PathLike[str] | None = None, *, stderr_level: int | None = None,
                  file: bool = True, debug: bool = False) -> Logging:
    """Install the handlers once; later calls return the same :class:`Logging` and add nothing.

    ``stderr_level`` adds a plain stderr handler (headless commands); the console passes None.
    ``debug`` lets DEBUG records (one per check started) be made at all: without it they cost
    nothing, with it about a tenth of a check's CPU on the engine's side.
    """
    global _setup
    with _setup_lock:
        if _setup is not None:
            if stderr_level is not None and _setup.stderr is not None:
                _setup.stderr.setLevel(stderr_level)
            if debug:
                log.setLevel(logging.DEBUG)
            return _setup
        log.setLevel(logging.DEBUG if debug else logging.INFO)
        log.propagate = False
        ring = LogRing()
        sink = BatchLogSink()
        log.addHandler(ring)
        log.addHandler(sink)
        fh, warnings = (_open_file(Path(log_dir) if log_dir else default_log_dir()) if file else (None, []))
        err = None
        if stderr_level is not None:
            err = logging.StreamHandler()
            err.setLevel(stderr_level)
            err.setFormatter(LineFormatter())
            log.addHandler(err)
        _setup = Logging(ring=ring, sink=sink, file_path=Path(fh.baseFilename) if fh else None, stderr=err,
                         file_handler=fh)
        for text in warnings:
            log.warning(text, extra={"event": LOG_FILE_UNSAFE})
            if stderr_level is not None and stderr_level > logging.WARNING:  # said once even when -v is not given
                print(f"storycheck: warning: {clean(text)}", file=sys.stderr)
        return _setup


def _open_file(directory: Path) -> tuple[OwnerOnlyRotatingFile | None, list[str]]:
    """Install the file's queue and writer on the logger; the file's handler (None if it cannot
    be used) and the warnings to log."""
    try:
        warnings = private_dir(directory)
        path = directory / "storycheck.log"
        fh = OwnerOnlyRotatingFile(path, maxBytes=10_000_000, backupCount=5, encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = exc.filename or directory
        return None, [f"log file disabled: cannot use {where}: {reason}"]
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(LineFormatter())
    log.addHandler(FileQueue(fh))
    return fh, warnings + fh.open_warnings


def set_stderr_enabled(enabled: bool) -> None:
    """The console silences stderr while it owns the terminal."""
    if _setup and _setup.stderr:
        _setup.stderr.setLevel(logging.WARNING if enabled else logging.CRITICAL + 1)


def reset_logging() -> None:
    """Remove every handler (tests, and a clean exit)."""
    global _setup
    with _setup_lock:
        for h in list(log.handlers):
            log.removeHandler(h)
            h.close()
        _setup = None
