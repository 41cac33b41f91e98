"""The only place with SQL that differs between SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Iterator

import peewee
from peewee import Database, PostgresqlDatabase

from storycheck_tui.states import CLAIMABLE, JobState, sql, sql_list

_PENDING, _RUNNING, _CLAIMABLE = sql(JobState.PENDING), sql(JobState.RUNNING), sql_list(CLAIMABLE)

_VALUES = "({p}, {p}, " + _PENDING + ", 0, 0, 0.0, 0)"
_FINISH_JOB = (f"UPDATE job SET state = ?, outcome = ?, story_count = ?, latest_story_at = ?, error_kind = ?, "
               "error_message = ?, proxy = ?, http_status = ?, latency_ms = ?, tries = ?, finished_at = ?, "
               "lease_owner = NULL, lease_until = NULL "
               f"WHERE id = ? AND state = {_RUNNING} AND lease_owner = ? AND lease_seq = ?")
_INSERT_JOBS = "INSERT INTO job (batch_id, username, state, attempts, lease_seq, run_after, tries) VALUES " + _VALUES

#: UPDATE ... FROM (3.33) and RETURNING (3.35): a group's fenced finish in one statement
_GROUP_UPDATE = sqlite3.sqlite_version_info >= (3, 35, 0)
#: rows per statement of a group write: at most 999 parameters, the limit of SQLite before 3.32
_CHUNK = 64
_FINISH_COLUMNS = 14  # the row tuples of finish_jobs
_FINISH_FROM = (
    "UPDATE job SET state = v.column4, outcome = v.column5, story_count = v.column6, "
    "latest_story_at = v.column7, error_kind = v.column8, error_message = v.column9, proxy = v.column10, "
    "http_status = v.column11, latency_ms = v.column12, tries = v.column13, finished_at = v.column14, "
    "lease_owner = NULL, lease_until = NULL FROM (VALUES {rows}) AS v "
    f"WHERE job.id = v.column1 AND job.state = {_RUNNING} AND job.lease_owner = v.column3 "
    "AND job.lease_seq = v.column2 RETURNING job.id")


def _pow2_at_least(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size


def _values(width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)


def _chunks(n: int, width: int) -> Iterator[tuple[int, int]]:
    """(start, size) pieces of ``n`` rows of ``width`` values: full chunks of :data:`_CHUNK` rows
    (fewer for wide rows: at most 999 parameters), then powers of two, so a group write uses a
    handful of statement texts (each prepared once, then cached)."""
    start = 0
    size = _CHUNK
    while size * width > 999:
        size //= 2
    while start < n:
        while size > n - start:
            size //= 2
        yield start, size
        start += size


class Dialect:
    name = "sqlite"
    #: the database clock as epoch seconds
    now = "((julianday('now') - 2440587.5) * 86400.0)"
    param = "?"

    def claim_sql(self) -> str:
        """Claim up to N pending jobs of one running batch in ONE statement.

        Parameters: owner, lease seconds, batch id, batch id, limit.
        The batch state is re-checked inside the statement, so a pause committed before
        the claim is always seen.
        """
        p, now = self.param, self.now
        return (
            f"UPDATE job SET state = {_RUNNING}, attempts = attempts + 1, lease_seq = lease_seq + 1, lease_owner = {p}, "
            f"lease_until = {now} + {p}, started_at = {now}, check_started_at = NULL "
            f"WHERE id IN (SELECT j.id FROM job j WHERE j.batch_id = {p} AND j.state = {_PENDING} "
            f"AND j.run_after <= {now} "
            f"AND EXISTS (SELECT 1 FROM batch b WHERE b.id = {p} AND b.state IN {_CLAIMABLE}) "
            f"ORDER BY j.id LIMIT {p}) "
            f"RETURNING id, batch_id, username, attempts, lease_seq"
        )

    def claim_params(self, owner: str, lease: float, batch_id: int, limit: int) -> tuple:
        return (owner, lease, batch_id, batch_id, limit)

    def extend_leases_sql(self) -> str:
        """Extend every lease ``owner`` holds. Parameters: see :meth:`extend_leases_params`."""
        p = self.param
        return f"UPDATE job SET lease_until = {self.now} + {p} WHERE state = {_RUNNING} AND lease_owner = {p}"

    def extend_leases_params(self, owner: str, lease: float) -> tuple:
        return (lease, owner)

    def insert_jobs(self, db: Database, batch_id: int, usernames: list[str]) -> None:
        """Bulk-insert pending jobs (peewee's per-row overhead made 100k rows take 3 s)."""
        db.cursor().executemany(_INSERT_JOBS.format(p="?"), [(batch_id, u) for u in usernames])

    def finish_jobs(self, db: Database, rows: list[tuple]) -> set[int]:
        """The fenced finish of a group, in the current transaction; returns the ids it changed.

        ``rows``: (id, lease_seq, owner, state, outcome, story_count, latest_story_at, error_kind,
        error_message, proxy, http_status, latency_ms, tries, finished_at), ordered by id, ids unique.
        A row changes only while the job is still 'running' under ``owner`` and ``lease_seq``.
        """
        if not rows:
            return set()
        if _GROUP_UPDATE:
            # One UPDATE ... FROM (VALUES ...) for up to _CHUNK rows, the fence in its WHERE, the
            # ids it changed returned: one statement per chunk, not one per row (a row each was
            # 2 us more per check, and a release of the GIL each). The last chunk is padded with
            # rows of NULLs, which match no job, to a power of two: few statement texts.
            changed: set[int] = set()
            with peewee.__exception_wrapper__:  # driver errors as peewee's, like execute_sql
                cur = db.cursor()
                for i in range(0, len(rows), _CHUNK):
                    part = rows[i:i + _CHUNK]
                    size = _pow2_at_least(len(part))
                    params = [value for row in part for value in row]
                    params.extend([None] * (_FINISH_COLUMNS * (size - len(part))))
                    cur.execute(_FINISH_FROM.format(rows=_values(_FINISH_COLUMNS, size)), params)
                    changed.update(job_id for (job_id,) in cur.fetchall())
            return changed
        # BEGIN IMMEDIATE makes this transaction SQLite's only writer: the rows that pass the fence
        # now still pass it at the UPDATE, so one SELECT picks them and one executemany (a C loop)
        # updates them, with the fence kept in the UPDATE all the same.
        held: dict[int, tuple[int, str]] = {}
        with peewee.__exception_wrapper__:  # driver errors as peewee's, like execute_sql
            cur = db.cursor()
            for i in range(0, len(rows), 500):
                part = rows[i:i + 500]
                cur.execute(f"SELECT id, lease_seq, lease_owner FROM job WHERE state = {_RUNNING} "
                            f"AND id IN ({', '.join('?' * len(part))})", [r[0] for r in part])
                held.update((job_id, (seq, owner)) for job_id, seq, owner in cur.fetchall())
            todo = [(*values, job_id, owner, seq) for job_id, seq, owner, *values in rows
                    if held.get(job_id) == (seq, owner)]
            cur.executemany(_FINISH_JOB, todo)
            if cur.rowcount != len(todo):  # cannot happen while we hold the write lock: roll back, retry
                raise RuntimeError(f"fenced finish changed {cur.rowcount} of {len(todo)} rows")
        return {t[-3] for t in todo}

    def insert_rows(self, db: Database, table: str, columns: tuple[str, ...], rows: list[tuple], *,
                    ignore_conflicts: bool = False) -> None:
        """Bulk-insert plain tuples in the current transaction (peewee's ``insert_many`` builds the
        SQL value by value: it was most of the cost of a group commit's log and story rows)."""
        if not rows:
            return
        verb = "INSERT OR IGNORE" if ignore_conflicts else "INSERT"
        head = f"{verb} INTO {table} ({', '.join(columns)}) VALUES "
        if len(rows) < 4 or len(columns) > 999 // 4:
            db.cursor().executemany(head + _values(len(columns), 1), rows)
            return
        # Many rows per statement (a statement per row was 1 us more per row); pieces of
        # _CHUNK rows, then of powers of two: a handful of statement texts, each cached.
        cur = db.cursor()
        for start, size in _chunks(len(rows), len(columns)):
            cur.execute(head + _values(len(columns), size),
                        [value for row in rows[start:start + size] for value in row])

    def execute_many(self, db: Database, sql: str, rows: list[tuple]) -> None:
        """One statement for many parameter tuples, in the current transaction."""
        if rows:
            db.cursor().executemany(sql, rows)

    @contextlib.contextmanager
    def schema_lock(self, db: Database) -> Iterator[None]:
        yield  # BEGIN IMMEDIATE already serialises schema creation on SQLite


class PostgresDialect(Dialect):
    name = "postgresql"
    now = "extract(epoch from clock_timestamp())"
    param = "%s"

    def claim_sql(self) -> str:
        # A bare IN-subquery can be re-evaluated and over-claim under concurrency on
        # PostgreSQL; a MATERIALIZED CTE with FOR UPDATE SKIP LOCKED claims each row once.
        p, now = self.param, self.now
        return (
            f"WITH c AS MATERIALIZED (SELECT j.id FROM job j WHERE j.batch_id = {p} "
            f"AND j.state = {_PENDING} AND j.run_after <= {now} "
            f"AND EXISTS (SELECT 1 FROM batch b WHERE b.id = {p} AND b.state IN {_CLAIMABLE}) "
            f"ORDER BY j.id LIMIT {p} FOR UPDATE OF j SKIP LOCKED) "
            f"UPDATE job SET state = {_RUNNING}, attempts = job.attempts + 1, lease_seq = job.lease_seq + 1, lease_owner = {p}, "
            f"lease_until = {now} + {p}, started_at = {now}, check_started_at = NULL "
            f"FROM c WHERE job.id = c.id "
            f"RETURNING job.id, job.batch_id, job.username, job.attempts, job.lease_seq"
        )

    def claim_params(self, owner: str, lease: float, batch_id: int, limit: int) -> tuple:
        return (batch_id, batch_id, limit, owner, lease)

    def extend_leases_sql(self) -> str:
        # Rows locked right now (this worker's writer finishing them, a reaper taking them back)
        # are skipped, not waited for: a wait here, in scan order, can close a deadlock cycle
        # with a transaction that locks jobs in id order. A skipped lease is extended next beat.
        p, now = self.param, self.now
        return (
            f"WITH c AS MATERIALIZED (SELECT id FROM job WHERE state = {_RUNNING} AND lease_owner = {p} "
            f"FOR UPDATE SKIP LOCKED) "
            f"UPDATE job SET lease_until = {now} + {p} FROM c WHERE job.id = c.id"
        )

    def extend_leases_params(self, owner: str, lease: float) -> tuple:
        return (owner, lease)

    def insert_jobs(self, db: Database, batch_id: int, usernames: list[str]) -> None:
        from psycopg2.extras import execute_values

        execute_values(db.cursor(), _INSERT_JOBS.split("VALUES")[0] + "VALUES %s",
                       [(batch_id, u) for u in usernames], template=_VALUES.format(p="%s"), page_size=2000)

    def finish_jobs(self, db: Database, rows: list[tuple]) -> set[int]:
        # One round trip a row made the writer the bottleneck (a 3 s transaction for 6,500 results,
        # claims queueing behind its batch-row lock). Lock the rows in id order first (as the
        # reaper does: no deadlock), then one fenced UPDATE ... FROM (VALUES ...) for all of them.
        if not rows:
            return set()
        from psycopg2.extras import execute_values

        cur = db.cursor()
        cur.execute("SELECT id FROM job WHERE id = ANY(%s) ORDER BY id FOR UPDATE", ([r[0] for r in rows],))
        returned = execute_values(
            cur,
            "UPDATE job SET state = v.state, outcome = v.outcome, story_count = v.story_count, "
            "latest_story_at = v.latest_story_at, error_kind = v.error_kind, error_message = v.error_message, "
            "proxy = v.proxy, http_status = v.http_status, latency_ms = v.latency_ms, tries = v.tries, "
            "finished_at = v.finished_at, lease_owner = NULL, lease_until = NULL "
            "FROM (VALUES %s) AS v(id, seq, owner, state, outcome, story_count, latest_story_at, error_kind, "
            "error_message, proxy, http_status, latency_ms, tries, finished_at) "
            f"WHERE job.id = v.id AND job.state = {_RUNNING} AND job.lease_owner = v.owner AND job.lease_seq = v.seq "
            "RETURNING job.id",
            rows, page_size=len(rows), fetch=True,
            template="(%s::integer, %s::integer, %s::text, %s::text, %s::text, %s::integer, %s::double precision, "
                     "%s::text, %s::text, %s::text, %s::integer, %s::double precision, %s::integer, "
                     "%s::double precision)")
        return {r[0] for r in returned}

    def insert_rows(self, db: Database, table: str, columns: tuple[str, ...], rows: list[tuple], *,
                    ignore_conflicts: bool = False) -> None:
        if rows:
            from psycopg2.extras import execute_values

            execute_values(db.cursor(), f"INSERT INTO {table} ({', '.join(columns)}) VALUES %s"
                           + (" ON CONFLICT DO NOTHING" if ignore_conflicts else ""), rows, page_size=1000)

    def execute_many(self, db: Database, sql: str, rows: list[tuple]) -> None:
        # psycopg2's executemany is a round trip per row; execute_batch sends pages of them
        if rows:
            from psycopg2.extras import execute_batch

            execute_batch(db.cursor(), sql, rows, page_size=500)

    @contextlib.contextmanager
    def schema_lock(self, db: Database) -> Iterator[None]:
        db.execute_sql("SELECT pg_advisory_lock(727001)")
        try:
            yield
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(727001)")


def dialect_for(db: Database) -> Dialect:
    return PostgresDialect() if isinstance(db, PostgresqlDatabase) else Dialect()
