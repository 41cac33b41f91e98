"""The log file: owner-only, never opened through a planted link, written by one thread.

The standard library does the work: a :class:`QueueHandler` on the ``storycheck`` logger
queues each record, a :class:`QueueListener` thread hands it to a
:class:`RotatingFileHandler`. Three things are storycheck's own:

* where the file is created: its directory must be ours and closed to others (a loose
  one of ours is tightened, with a warning; anyone else's writable one is refused), the
  file is created with ``O_EXCL | O_NOFOLLOW`` and mode 0600 whatever the umask (also after
  a rotation); an existing one must be a regular file of ours (a symlink is refused, loose
  permissions are tightened, with a warning);
* the record is queued as it is: it is formatted on the writer thread, not on the check
  thread that logged it (the library's ``prepare`` would format and copy every record);
* the writer thread wakes for what has gathered in the queue, not for every record
  (:class:`_Listener`), and writes what it found to the file's buffer, flushed to disk once
  the queue is empty again: one write per gathering, not a write (and two ``stat`` calls, the
  library's check that the file is still a regular file) per record.

Threads: the listener's thread owns the file's stream; logging threads only enqueue (a
``SimpleQueue``: no lock of the handler's or the queue's own in Python per record).
:meth:`FileQueue.flush` returns once everything queued before it is on disk; ``close`` (and
so ``logging.shutdown`` at exit) drains the queue first, so no record is lost on a normal
exit. A SIGKILL loses what was still queued or not yet flushed (at most one gathering).
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import queue
import stat
import threading
from pathlib import Path
from typing import TextIO


class UnsafeLogPath(OSError):
    """The log directory or file cannot be trusted (someone else's, or a link)."""


def private_dir(directory: Path) -> list[str]:
    """Create ``directory`` 0700 if missing; make sure nobody else can plant files in it.

    Returns the warnings to log (a loose directory of ours was tightened); raises
    :class:`UnsafeLogPath` for a directory of another user that others may write to, unless it
    is sticky like ``/tmp``.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeLogPath(errno.ENOTDIR, "not a directory", str(directory))
    loose = stat.S_IMODE(st.st_mode) & 0o022
    if not loose or st.st_mode & stat.S_ISVTX:
        # sticky (/tmp): others may create files but not replace or remove ours; a file they
        # plant under our name is refused by open_private (not ours, or a link)
        return []
    if st.st_uid != os.geteuid():
        raise UnsafeLogPath(errno.EPERM, f"others may write in it (mode {stat.S_IMODE(st.st_mode):04o}, "
                                         f"owner uid {st.st_uid})", str(directory))
    os.chmod(directory, 0o700)
    return [f"log directory {directory} was open to others (mode {stat.S_IMODE(st.st_mode):04o}): set to 0700"]


def open_private(path: str, *, encoding: str | None = "utf-8") -> tuple[TextIO, list[str]]:
    """Open ``path`` to append, owner-only; returns the stream and warnings to log.

    A new file is created 0600 with ``O_EXCL | O_NOFOLLOW``; an existing one is opened with
    ``O_NOFOLLOW`` and must be a regular file of ours with one link; a loose mode is set to 0600.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    warnings: list[str] = []
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)  # a FIFO planted here must not block the open
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeLogPath(errno.ELOOP, "is a symbolic link", path) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeLogPath(errno.EINVAL, "not a regular file", path)
            if st.st_uid != os.geteuid():
                raise UnsafeLogPath(errno.EPERM, f"belongs to uid {st.st_uid}", path)
            if st.st_nlink != 1:
                raise UnsafeLogPath(errno.EMLINK, f"has {st.st_nlink} hard links", path)
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                os.fchmod(fd, 0o600)
                warnings.append(f"log file {path} was readable or writable by others (mode {mode:04o}): set to 0600")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
    return os.fdopen(fd, "a", encoding=encoding), warnings


class OwnerOnlyRotatingFile(logging.handlers.RotatingFileHandler):
    """The standard rotating file, opened by :func:`open_private` (after a rotation too).

    Written by one thread (the listener's), which flushes it when its queue runs dry: a record
    goes to the stream's buffer, not to disk on its own. The size that decides a rotation is
    the file's size as last read (at the first record after a flush or a rotation: another
    process may append to the same file) plus what was written since. The library checks before
    every record that the path is still a regular file (two ``stat`` calls); :func:`open_private`
    has checked that the file it opened is one, so that check is left out.
    """

    def __init__(self, path: Path, **kwargs) -> None:
        self.open_warnings: list[str] = []
        self._size: int | None = None  # characters in the file (as tell() counts), None: read it again
        super().__init__(path, **kwargs)

    def _open(self) -> TextIO:  # FileHandler's documented hook for how the file is opened
        stream, warnings = open_private(self.baseFilename, encoding=self.encoding)
        self.open_warnings.extend(warnings)
        self._size = None
        return stream

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is None:
            self.stream = self._open()
        if self.maxBytes <= 0:
            return False
        if self._size is None:
            self.stream.seek(0, 2)
            self._size = self.stream.tell()
        return self._size + len(self.format(record)) + len(self.terminator) >= self.maxBytes

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.shouldRollover(record):
                self.doRollover()
            if self.stream is None:
                self.stream = self._open()
            msg = self.format(record) + self.terminator
            self.stream.write(msg)  # flushed by the listener when its queue runs dry
            if self._size is not None:
                self._size += len(msg)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def emit_many(self, records: list[logging.LogRecord]) -> None:
        """:meth:`handle` for each record, written as one piece when they all fit before the
        size that rotates the file (else record by record, rotating where it must)."""
        try:
            if self.stream is None:
                self.stream = self._open()
            if self._size is None:
                self.stream.seek(0, 2)
                self._size = self.stream.tell()
            text = "".join([self.format(r) + self.terminator for r in records if r.levelno >= self.level])
        except Exception:  # a record that cannot be formatted: each one on its own, as handle() would
            for record in records:
                self.handle(record)
            return
        if self.filters or (self.maxBytes > 0 and self._size + len(text) >= self.maxBytes):
            for record in records:
                self.handle(record)
            return
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write(text)  # flushed by the listener when its queue runs dry
                self._size += len(text)
            except Exception:
                self.handleError(records[0])

    def flush(self) -> None:
        super().flush()
        self._size = None  # what another process appended since counts from the next record on


#: seconds the writer thread lets records gather before it writes them (see _Listener)
WRITE_EVERY = 0.1


class _Flush:
    """A mark :meth:`FileQueue.flush` queues: set once everything queued before it is on disk."""

    def __init__(self) -> None:
        self.done = threading.Event()


class _Listener(logging.handlers.QueueListener):
    """The library's listener, waking for a queue that has gathered records rather than for
    each record: when it finds the queue empty it flushes the file, then waits ``every``
    seconds (or until :meth:`FileQueue.flush` or ``stop`` wakes it) before it blocks on the
    queue again.

    Measured (benchmark 1 quick, pinned, 5 alternating runs, median CPU us per check): woken
    per record (the stock listener) 360 us, 416 with --debug; this way 340 and 385, as the
    earlier hand-written writer (347 and 377). With one thread taking the GIL for each record,
    16 check threads paid for it.
    """

    def __init__(self, q: queue.SimpleQueue, *handlers: logging.Handler, every: float = WRITE_EVERY) -> None:
        super().__init__(q, *handlers, respect_handler_level=True)
        self.every = every
        self.wake = threading.Event()

    def dequeue(self, block: bool) -> logging.LogRecord:  # the listener's documented hook
        if block and self.queue.empty():
            self._flush_handlers()  # the queue ran dry: what was written goes to disk now
            self.wake.wait(self.every)
            self.wake.clear()
        return self.queue.get(block)

    def handle(self, record: logging.LogRecord | _Flush | list) -> None:  # the listener's documented hook
        if type(record) is list:  # FileQueue.handle_many: several records, in order
            many = getattr(self.handlers[0], "emit_many", None) if len(self.handlers) == 1 else None
            if many is not None:
                many(record)
            else:
                for one in record:
                    super().handle(one)
            return
        if isinstance(record, _Flush):
            try:
                self._flush_handlers()
            finally:
                record.done.set()
            return
        super().handle(record)

    def _flush_handlers(self) -> None:
        for handler in self.handlers:
            try:
                handler.flush()
            except Exception:  # a full disk: said as a failed write is, and the thread goes on
                handler.handleError(logging.makeLogRecord({"msg": "flush of the log file"}))

    def stop(self) -> None:
        self.wake.set()
        super().stop()


class FileQueue(logging.handlers.QueueHandler):
    """Queues records for ``target``, written by a :class:`QueueListener` thread."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(queue.SimpleQueue())
        self.target = target
        self.listener = _Listener(self.queue, target)
        self.listener.start()
        self._running = True

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        ok = bool(self.filter(record))  # no handler lock: the queue is thread-safe on its own
        if ok:
            self.emit(record)
        return ok

    def handle_many(self, records: list[logging.LogRecord]) -> None:
        """:meth:`handle` for each record, queued as one item (one ``put``, one ``get``)."""
        if self.filters:
            records = [r for r in records if self.filter(r)]
        for record in records:
            if record.exc_info:
                self.prepare(record)
        if records:
            try:
                self.queue.put_nowait(records)
            except Exception:  # pragma: no cover - as QueueHandler.emit
                self.handleError(records[0])

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.exc_info:  # the traceback's text now, while its frames are current (cached on the record)
            self.target.format(record)
        return record  # the rest is formatted on the writer thread

    def flush(self) -> None:
        """Return once every record queued so far is written and flushed. Records logged
        meanwhile queue up behind the mark this waits for, not ahead of it."""
        self.acquire()  # one flush or close at a time: a mark queued behind close's end would wait forever
        try:
            if self._running:
                mark = _Flush()
                self.queue.put(mark)
                self.listener.wake.set()
                mark.done.wait()
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            if self._running:
                self._running = False
                self.listener.stop()  # writes what is queued, then ends the thread
            self.target.close()
        finally:
            self.release()
        super().close()
