"""Open the database named by a URL, create or upgrade its schema, check its version.

``sqlite:///path``, a plain path, or ``postgresql://user:pass@host:port/db``. The default
is ``storycheck.db`` in the platform data dir. SQLite runs in WAL mode with a busy timeout
and ``BEGIN IMMEDIATE`` for every transaction (a deferred one that reads then writes fails
at once under contention). PostgreSQL uses a pool of at most ``pool_size`` connections (one
per thread that touches the database); libpq options may follow in the query string
(``?sslmode=require``). The password is registered as a secret: it is masked in every
message, log line and display name.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from peewee import (CharField, Database, DoubleField, Field, IntegerField, OperationalError, PeeweeException,
                    SqliteDatabase, TextField)

from storycheck_tui import __version__
from storycheck_tui.errors import DatabaseError
from storycheck_tui.masking import MASK, mask_url, one_line as masked_line, register_secret
from storycheck_tui.store import models, sqlitefile
from storycheck_tui.store.dialect import Dialect, dialect_for

SCHEMA_VERSION = 8
ENV_VAR = "STORYCHECK_DB"


class LogSink(Protocol):
    """Where batch records wait for the ``batch_log`` table (``logs.BatchLogSink``)."""

    def drain(self) -> list: ...

    def requeue(self, entries: list) -> None: ...


@dataclass(eq=False)
class Store:
    """An open database: the peewee handle, its dialect and a secret-free name.

    One store per process: the peewee models (``store.models``) are bound to the open store,
    so a second ``open_store`` while one is open is refused (see :func:`open_store`).
    """

    db: Database
    dialect: Dialect
    display: str  # the URL or path with any password masked
    #: the batch-log sink the caller passed to open_store: batch operations store its queued
    #: records (batches.flush_logs); None stores none (the records still reach the log file)
    log_sink: LogSink | None = None
    #: what was made safe while opening (loose permissions tightened), for the caller to show
    notices: list[str] = field(default_factory=list)

    def close(self) -> None:
        """Close the connections and release the models; using the store afterwards fails
        loudly instead of quietly reconnecting."""
        global _open
        with _open_lock:
            if _open is self:
                _open = None
                models.database.initialize(None)
        if not self.db.is_closed():
            self.db.close()
        close_all = getattr(self.db, "close_all", None)
        if close_all:
            close_all()

    def atomic(self):
        """A writing transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        return self.db.atomic()

    def recover(self) -> None:
        """After a database error on this thread: drop its connection if it is broken (the
        PostgreSQL server restarted or failed over, the network was cut), so the next query
        opens a fresh one instead of failing forever with "connection already closed"."""
        db = self.db
        try:
            if not db.is_closed() and not db.is_connection_usable():
                db.close()  # the pool discards a connection it cannot reuse
        except Exception:  # pragma: no cover - nothing more to do with a dead connection
            pass


def one_line(exc: BaseException) -> str:
    """A driver's error text, secrets scrubbed, on one line (libpq adds a tab-indented hint line)."""
    return masked_line(str(exc), fold=True)


def default_db_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("storycheck", appauthor=False)) / "storycheck.db"


def resolve_url(url: str | None) -> str:
    return url or os.environ.get(ENV_VAR) or str(default_db_path())


#: the open store of this process (the one the peewee models are bound to); owned by
#: open_store/Store.close under _open_lock
_open: Store | None = None
_open_lock = threading.Lock()


def open_store(url: str | None = None, *, pool_size: int = 8, create: bool = True,
               log_sink: LogSink | None = None) -> Store:
    """Open (and by default create/upgrade) the database; errors are one clear line.

    One store per process, enforced: the peewee models are bound process-wide (every entry
    point — run, worker, console, each CLI command — opens exactly one database), so a second
    open while one is open is a :class:`DatabaseError`, never a silent switch of every model
    to the other database. Close the first to open another.
    """
    global _open
    url = resolve_url(url)
    with _open_lock:
        if _open is not None:
            raise DatabaseError(f"{_open.display}: is already open in this process (one database per "
                                f"process): close it before opening another")
        if url.startswith(("postgresql://", "postgres://")):
            store = _open_postgres(url, pool_size)
        else:
            store = _open_sqlite(url)
        store.log_sink = log_sink
        models.database.initialize(store.db)
        _open = store
    try:
        store.db.connect(reuse_if_open=True)
        if isinstance(store.db, SqliteDatabase) and store.display != ":memory:":
            _use_wal(store.db)
        ensure_schema(store, create=create)
    except PeeweeException as exc:
        store.close()
        raise DatabaseError(f"{store.display}: cannot open database: {one_line(exc)}") from None
    except sqlite3.Error as exc:  # pragma: no cover - peewee wraps most of these
        store.close()
        raise DatabaseError(f"{store.display}: cannot open database: {exc}") from None
    except BaseException:  # a newer schema, no schema, an interrupt: nothing stays open
        store.close()
        raise
    return store


def _open_sqlite(url: str) -> Store:
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
    if url.startswith("sqlite://") and not url.startswith("sqlite:///"):
        raise DatabaseError(f"{url}: use sqlite:///PATH (three slashes) or a plain path")
    p = Path(path).expanduser()
    display = str(p)
    notices: list[str] = []
    if path != ":memory:":
        if not p.parent.exists():
            if url == str(default_db_path()) or p == default_db_path():
                p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            else:
                raise DatabaseError(f"{display}: cannot open database: directory {p.parent} does not exist")
        notices = sqlitefile.prepare(p)  # no symlinks followed, no loose modes kept
        if not os.access(p, os.R_OK | os.W_OK):
            raise DatabaseError(f"{display}: cannot open database: file is not readable and writable by this user")
        if not os.access(p.parent, os.W_OK):
            raise DatabaseError(f"{display}: cannot open database: directory {p.parent} is not writable (SQLite needs it for its journal)")
    db = SqliteDatabase(
        str(p),
        pragmas={"busy_timeout": 30_000, "synchronous": "normal", "foreign_keys": 1},
        timeout=30,
        lock_type="IMMEDIATE",
        check_same_thread=False,
    )
    return Store(db=db, dialect=dialect_for(db), display=display, notices=notices)


#: how long open_store keeps trying to switch a new SQLite file to WAL (like busy_timeout)
WAL_SWITCH_SECONDS = 30.0


def _use_wal(db: SqliteDatabase) -> None:
    """Switch the file to WAL (persistent: later connections inherit it), retrying while locked.

    A new file starts in rollback-journal mode. When several processes open it at once, two
    readers both asking for the exclusive lock the switch needs is a deadlock SQLite breaks by
    answering SQLITE_BUSY at once, without waiting on the busy timeout; so the wait is here.
    """
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    pause = 0.005
    while True:
        try:
            db.execute_sql("PRAGMA journal_mode=wal")
            return
        except OperationalError as exc:
            if not is_locked_error(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


#: libpq options that carry a credential: registered as secrets, masked in the display name
CREDENTIAL_OPTIONS = frozenset({"password", "sslpassword"})


def _is_credential(option: str) -> bool:
    name = option.lower()
    return name in CREDENTIAL_OPTIONS or any(w in name for w in ("password", "secret", "token"))


def postgres_display(url: str) -> str:
    """``url`` with the userinfo password and every credential-bearing option masked."""
    masked = mask_url(url)
    base, sep, query = masked.partition("?")
    if not sep:
        return masked
    pairs = []
    for item in query.split("&"):
        key, eq, _value = item.partition("=")
        pairs.append(f"{key}={MASK}" if eq and _is_credential(unquote(key)) else item)
    return base + "?" + "&".join(pairs)


def _open_postgres(url: str, pool_size: int) -> Store:
    from playhouse.pool import PooledPostgresqlDatabase

    display = postgres_display(url)
    try:
        parts = urlsplit(url)
        port = parts.port
        # libpq options in the query string pass through (?sslmode=require&connect_timeout=5 …).
        options = dict(parse_qsl(parts.query))
    except ValueError as exc:
        raise DatabaseError(f"{display}: not a valid PostgreSQL URL ({exc})") from None
    if parts.password:
        register_secret(unquote(parts.password))
    for key, value in options.items():
        if _is_credential(key):
            register_secret(value)
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        raise DatabaseError("PostgreSQL needs psycopg2: pip install 'storycheck[postgres]'") from None
    # user, password, host, port and dbname may come from the URL or its options (libpq takes
    # both), not from both at once.
    given = {"user": unquote(parts.username) if parts.username else None,
             "password": unquote(parts.password) if parts.password else None,
             "host": parts.hostname, "port": port, "dbname": unquote(parts.path.lstrip("/")) or None}
    for key in given:
        if key in options:
            if given[key] is not None:
                raise DatabaseError(f"{display}: {key} given twice (in the URL and as ?{key}=): give it once")
            given[key] = options.pop(key)
    if not given["dbname"]:
        raise DatabaseError(f"{display}: the URL names no database (postgresql://user:pass@host:port/DBNAME)")
    options.setdefault("connect_timeout", "10")
    options.setdefault("application_name", "storycheck")
    db = PooledPostgresqlDatabase(
        given["dbname"],
        user=given["user"],
        password=given["password"],
        host=given["host"] or "localhost",
        port=given["port"] or 5432,
        max_connections=pool_size,
        stale_timeout=300,
        timeout=30,
        **options,
    )
    return Store(db=db, dialect=dialect_for(db), display=display)


# One definition for both backends: the models in ``models.py`` (tables, their indexes) and
# ``models.PARTIAL_INDEXES`` describe the NEWEST schema, created in one go on an empty
# database. ``UPGRADES[v]`` turns a version ``v - 1`` database into version ``v`` (with
# playhouse.migrate or dialect-neutral SQL), run in order inside the same transaction.
def _add_columns(store: Store, table: str, columns: dict[str, Field]) -> None:
    """Add the ``columns`` that ``table`` lacks (an upgrade interrupted after its DDL but before
    its version was written runs again without failing)."""
    from playhouse.migrate import SchemaMigrator, migrate

    migrator = SchemaMigrator.from_database(store.db)
    have = {c.name for c in store.db.get_columns(table)}
    migrate(*[migrator.add_column(table, name, field) for name, field in columns.items() if name not in have])


def _v2_validate_requests(store: Store) -> None:
    """proxy.validate_requested_at: an operator's "validate now" that reaches every worker."""
    _add_columns(store, "proxy", {"validate_requested_at": DoubleField(null=True)})


def _v3_watches(store: Store) -> None:
    """batch.watch_id; the watch tables and their indexes are created by ensure_schema."""
    _add_columns(store, "batch", {"watch_id": IntegerField(null=True)})


def _v4_spend(store: Store) -> None:
    """batch.requests and batch.max_requests, and the spend table: requests per batch and result."""
    _add_columns(store, "batch", {"requests": IntegerField(default=0), "max_requests": IntegerField(null=True)})
    store.db.create_tables([models.Spend], safe=True)


def _v5_check_started(store: Store) -> None:
    """job.check_started_at: a worker's death counts only against checks that were in flight."""
    _add_columns(store, "job", {"check_started_at": DoubleField(null=True)})


def _v6_worker_pace(store: Store) -> None:
    """worker.pace and worker.pace_key: the source's pace each worker learned, for late starters."""
    _add_columns(store, "worker", {"pace": DoubleField(null=True), "pace_key": CharField(null=True)})


def _v7_knobs(store: Store) -> None:
    """worker.pace_reason, circuit, circuit_reason (shown by `batches` and the console); the knob
    table (runtime settings) is created by ensure_schema."""
    _add_columns(store, "worker", {"pace_reason": TextField(null=True), "circuit": CharField(null=True),
                                   "circuit_reason": TextField(null=True)})


def _v8_worker_blocked(store: Store) -> None:
    """worker.blocked: why the worker can send nothing now (shown by `batches` and the console)."""
    _add_columns(store, "worker", {"blocked": TextField(null=True)})


UPGRADES: dict[int, Callable[[Store], None]] = {2: _v2_validate_requests, 3: _v3_watches, 4: _v4_spend,
                                                5: _v5_check_started, 6: _v6_worker_pace, 7: _v7_knobs,
                                                8: _v8_worker_blocked}


def _schema_version(store: Store) -> int | None:
    if not store.db.table_exists(models.Meta_._meta.table_name):
        return None
    row = models.Meta_.get_or_none(models.Meta_.key == "schema_version")
    return int(row.value) if row else None


def _refuse_newer(store: Store, found: int) -> None:
    raise DatabaseError(
        f"{store.display}: the database schema is version {found}, but this storycheck "
        f"({__version__}) knows only up to version {SCHEMA_VERSION}: upgrade storycheck on this "
        f"machine (pip install -U storycheck) before using this database")


def ensure_schema(store: Store, *, create: bool = True) -> None:
    """Create the tables, upgrade an older schema, refuse a newer one.

    Several workers may start at once against an empty or older database: the schema lock
    (an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) lets one of them create
    or upgrade while the others wait, then find the version current and carry on.
    """
    db = store.db
    found = _schema_version(store)
    if found is not None and found > SCHEMA_VERSION:
        _refuse_newer(store, found)
    if found == SCHEMA_VERSION:
        return
    if not create:
        raise DatabaseError(f"{store.display}: not a storycheck database (no schema)")
    with store.dialect.schema_lock(db):
        with db.atomic():
            found = _schema_version(store)  # again: another process may have done it meanwhile
            if found == SCHEMA_VERSION:
                return
            if found is not None and found > SCHEMA_VERSION:
                _refuse_newer(store, found)
            if found is not None:
                for version in range(found + 1, SCHEMA_VERSION + 1):
                    UPGRADES[version](store)
            db.create_tables(models.MODELS, safe=True)
            for _name, sql in models.PARTIAL_INDEXES:
                db.execute_sql(sql)
            models.Meta_.insert(key="schema_version", value=str(SCHEMA_VERSION)).on_conflict(
                conflict_target=[models.Meta_.key], update={models.Meta_.value: str(SCHEMA_VERSION)}).execute()


def is_locked_error(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "locked" in str(exc).lower()
