"""Shared test fixtures.

Database fixtures: every database test runs on SQLite AND PostgreSQL
------------------------------------------------------------------------
``store``
    A fresh, open :class:`~storycheck_tui.store.db.Store` (schema created) for one test,
    parametrized ``[sqlite]`` / ``[postgres]``; closed (and its database dropped) after it.
    Use it for anything that reads or writes the database::

        def test_pause_is_seen(store):
            batch_id = ops.create_batch(store, "b", ["a", "b"])

``db_url``
    The URL of that same kind of fresh database (schema created, same two parameters), for
    tests that open their own stores or start subprocesses (``storycheck worker --db URL``).
    ``store`` is ``open_store(db_url)``: a test may use both.

``pg_url``
    The URL of a fresh, EMPTY PostgreSQL database (no schema yet), for tests of schema
    creation and of several worker processes. PostgreSQL only.

Where PostgreSQL comes from: ``STORYCHECK_TEST_PG`` (``postgresql://user@host:port/db``; the
user must be allowed to CREATE DATABASE). ``source .ci/start-postgres.sh`` starts a
throwaway server and sets it; ``.ci/run`` does that for CI. Without it the postgres cases
are skipped locally, but under ``CI=true`` they FAIL: CI must never go green by skipping
them. Each postgres test gets its own database, cloned from a template that already has
the schema (``CREATE DATABASE … TEMPLATE``: a few tens of milliseconds).
"""

from __future__ import annotations

import itertools
import os
import re
from urllib.parse import urlsplit, urlunsplit

import pytest

from storycheck_tui.store.workers import pid_alive

PG_ENV = "STORYCHECK_TEST_PG"
BACKENDS = ["sqlite", "postgres"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


class PgServer:
    """Creates and drops per-test databases on the server named by STORYCHECK_TEST_PG."""

    def __init__(self, url: str):
        import psycopg2

        self.url = url
        self.conn = psycopg2.connect(url, connect_timeout=10)
        self.conn.autocommit = True
        self.prefix = f"sct_{os.getpid()}_"
        self._n = itertools.count(1)
        self._template: str | None = None
        self._drop_leftovers()

    def _sql(self, sql: str, params: tuple = ()) -> list:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def _drop_leftovers(self) -> None:
        """Databases of earlier test sessions that were killed before they cleaned up."""
        for (name,) in self._sql("SELECT datname FROM pg_database WHERE datname LIKE 'sct\\_%%'"):
            m = re.match(r"sct_(\d+)_", name)
            if m and not pid_alive(int(m.group(1))):
                self.drop(name)

    def create(self, *, with_schema: bool) -> str:
        """A new database; its URL. ``with_schema``: cloned from the schema template."""
        name = f"{self.prefix}{next(self._n)}"
        template = self._schema_template() if with_schema else "template0"
        self._sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return _with_database(self.url, name)

    def _schema_template(self) -> str:
        if self._template is None:
            from storycheck_tui.store.db import open_store

            name = f"{self.prefix}template"
            self._sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
            open_store(_with_database(self.url, name), pool_size=1).close()
            self._template = name
        return self._template

    def drop(self, name_or_url: str) -> None:
        name = urlsplit(name_or_url).path.lstrip("/") if "://" in name_or_url else name_or_url
        self._sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        if self._template:
            self.drop(self._template)
        self.conn.close()


@pytest.fixture(scope="session")
def pg_server():
    """The PostgreSQL server for this session (skips, or fails under CI=true, without one)."""
    url = os.environ.get(PG_ENV)
    if not url:
        if _in_ci():
            pytest.fail(f"CI=true but {PG_ENV} is not set: .ci/run must start PostgreSQL "
                        f"(.ci/start-postgres.sh); the postgres tests may not be skipped in CI", pytrace=False)
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (run: source .ci/start-postgres.sh)")
    try:
        server = PgServer(url)
    except Exception as exc:  # a server that was promised but is not there is an error, never a skip
        from storycheck_tui.masking import mask_url

        pytest.fail(f"{PG_ENV}={mask_url(url)}: cannot use it: {mask_url(str(exc)).strip()}", pytrace=False)
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty PostgreSQL database (no schema) for this test."""
    url = pg_server.create(with_schema=False)
    yield url
    pg_server.drop(url)


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A fresh database with the schema, on each backend."""
    if request.param == "sqlite":
        from storycheck_tui.store.db import open_store

        path = str(tmp_path / "storycheck.db")
        open_store(path).close()
        yield path
        return
    server = request.getfixturevalue("pg_server")
    url = server.create(with_schema=True)
    yield url
    server.drop(url)


@pytest.fixture
def store(db_url):
    """A fresh, open Store on each backend (see the module docstring)."""
    from storycheck_tui.store.db import open_store

    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _secrets_stay_per_test():
    """Every password or key a test registers is forgotten after it.

    The registry is process-wide by design (one run, one set of secrets); across tests a
    password such as "8080" from one test would mask port numbers in another's screens.
    """
    from storycheck_tui.masking import secrets

    saved = secrets.values()
    yield
    secrets.restore(saved)
