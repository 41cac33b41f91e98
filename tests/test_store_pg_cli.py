"""Every command against PostgreSQL, given ``--db postgresql://user:PASSWORD@…`` or
``STORYCHECK_DB``: each works, and the password shows up nowhere (stdout, stderr, the log
file, the batch log, an export)."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import unquote, urlsplit, urlunsplit

from storycheck_tui.sim import Simulator

FAKE_PASSWORD = "Leak-Check-Pw-9157"


def url_with_password(url: str) -> tuple[str, str]:
    """The URL with a password in it (the server's own if it has one; trust auth ignores a fake one)."""
    parts = urlsplit(url)
    if parts.password:
        return url, unquote(parts.password)
    netloc = f"{parts.username or 'postgres'}:{FAKE_PASSWORD}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc)), FAKE_PASSWORD


def test_every_command_works_on_postgresql_and_never_shows_the_password(pg_url, tmp_path):
    url, password = url_with_password(pg_url)
    logs_dir = tmp_path / "logs"
    env = {**os.environ, "STORYCHECK_LOG_DIR": str(logs_dir), "STORYCHECK_DB": ""}
    seen: list[str] = []

    def sc(*argv: str, code: int | tuple[int, ...] = 0, extra_env: dict | None = None) -> str:
        p = subprocess.run([sys.executable, "-m", "storycheck_tui", *argv], capture_output=True, text=True,
                           timeout=120, env={**env, **(extra_env or {})}, cwd=tmp_path)
        seen.extend([p.stdout, p.stderr])
        assert p.returncode in (code if isinstance(code, tuple) else (code,)), (argv, p.returncode, p.stdout[-1500:], p.stderr[-1500:])
        return p.stdout + p.stderr

    with Simulator(proxies=2, rate=10_000, burst=10_000, seed=2) as sim:
        cfg = tmp_path / "c.toml"
        cfg.write_text(sim.config_snippet() + "\n[proxies]\nrate = 500\nburst = 50\n[engine]\nworkers = 4\n")
        (tmp_path / "proxies.txt").write_text("\n".join(sim.proxy_urls) + "\n")
        (tmp_path / "a.txt").write_text("\n".join(f"alice{i}" for i in range(30)) + "\n")
        (tmp_path / "b.txt").write_text("\n".join(f"bob{i}" for i in range(20)) + "\n")
        db = ["--db", url]
        assert "2 proxies added" in sc("proxies", "add", str(tmp_path / "proxies.txt"), *db)
        sc("add", str(tmp_path / "a.txt"), "--name", "a", *db)
        assert "stopped after 30 checks" in sc("worker", "--until-idle", "--config", str(cfg), *db)
        assert "20/20 checked" in sc("run", str(tmp_path / "b.txt"), "--name", "b", "--config", str(cfg), *db)
        sc("add", str(tmp_path / "a.txt"), "--name", "c", *db)
        assert "batch 3 paused" in sc("pause", "3", *db)
        assert "batch 3 resumed" in sc("resume", "3", *db)
        assert "cancelled" in sc("cancel", "c", *db)
        sc("retry-failed", "1", *db)
        listed = sc("batches", *db)
        assert "finished" in listed and "cancelled" in listed
        assert '"state": "finished"' in sc("batches", "--json", *db)
        assert "healthy" in sc("proxies", "list", *db)
        sc("proxies", "check", "--config", str(cfg), *db)
        assert "disabled" in sc("proxies", "disable", "1", *db)
        assert "enabled" in sc("proxies", "enable", "1", *db)
        assert "alice0" in sc("export", "1", "--format", "csv", *db)
        sc("export", "2", "--format", "jsonl", "-o", str(tmp_path / "b.jsonl"), *db)
        assert "STORY_CHECK_SUCCESS" in sc("logs", "--limit", "0", *db)
        sc("logs", "--json", "--batch", "1", *db)
        assert "demo" in sc("demo", "--headless", "--profiles", "6", *db, code=(0, 1))  # 1: some demo checks fail
        # the environment variable instead of --db
        assert "finished" in sc("batches", extra_env={"STORYCHECK_DB": url})

    outputs = "\n".join(seen)
    assert "***" in outputs  # the masked URL was shown (worker banner), with the password masked
    assert password not in outputs
    for f in logs_dir.rglob("*"):
        if f.is_file():
            assert password not in f.read_text(errors="replace"), f
    assert password not in (tmp_path / "b.jsonl").read_text()
    from storycheck_tui.store.db import open_store

    store = open_store(pg_url)
    try:
        for table, cols in (("batch_log", "message || coalesce(details, '')"), ("job", "coalesce(error_message, '')"),
                            ("proxy", "coalesce(last_error, '')")):
            n = store.db.execute_sql(f"SELECT COUNT(*) FROM {table} WHERE {cols} LIKE %s", (f"%{password}%",)).fetchone()[0]
            assert n == 0, table
    finally:
        store.close()


def test_credential_options_of_the_url_never_reach_the_screen(pg_url, tmp_path):
    """?sslpassword= and ?password= are masked on the worker's start line and in "cannot open
    database" (issue 15: they were printed as given)."""
    secret = "Ssl-Opt-Secret-4411"
    env = {**os.environ, "STORYCHECK_LOG_DIR": str(tmp_path / "logs"), "STORYCHECK_DB": ""}
    with Simulator(rate=10_000, burst=10_000) as sim:
        cfg = tmp_path / "c.toml"
        cfg.write_text(sim.config_snippet())
        url = f"{pg_url}?sslmode=disable&sslpassword={secret}"
        p = subprocess.run([sys.executable, "-m", "storycheck_tui", "worker", "--until-idle", "--config", str(cfg),
                            "--db", url], capture_output=True, text=True, timeout=120, env=env)
        assert p.returncode == 0, p.stderr[-1500:]
        start = [ln for ln in p.stderr.splitlines() if "check threads on" in ln]
        assert start and "sslpassword=***" in start[0], p.stderr
        parts = urlsplit(pg_url)
        missing = urlunsplit(parts._replace(path="/no_such_db_4411", query=f"sslpassword={secret}&password={secret}"))
        p = subprocess.run([sys.executable, "-m", "storycheck_tui", "batches", "--db", missing], capture_output=True,
                           text=True, timeout=60, env=env)
        assert p.returncode == 3 and len(p.stderr.strip().splitlines()) == 1 and "cannot open database" in p.stderr
        for text in (p.stdout, p.stderr, *(f.read_text() for f in (tmp_path / "logs").rglob("*.log"))):
            assert secret not in text
