"""The real engine against the simulator, wired as ``storycheck run`` wires it (child side).

Same pieces as the CLI: ``logs.setup_logging`` with the rotating file at its default level
(INFO; ``debug`` in the parameters is ``--debug``: a DEBUG record per check started) and stderr
silenced, a SQLite file (or the PostgreSQL URL given), proxies and a batch in the database,
``build_runner`` with the http source in its sim preset. With ``watch`` in the parameters the
profiles are a watch and the batch is its first round (story history and events are written
with every fenced finish).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path

from benchmarks.common import cpu_seconds, measure_window, peak_rss_mb, thread_cpu_seconds, usernames


def thread_role(name: str) -> str:
    """The engine's thread roles (runner.py names them storycheck-ROLE; the log file's writer is
    the standard library's QueueListener thread)."""
    role = name.removeprefix("storycheck-")
    if role.startswith("check-"):
        return "check threads"
    if "_monitor" in name:
        return "log file"
    return role if role in ("writer", "claimer", "keeper", "validator") else "other"


def settings_for(p: dict):
    from storycheck_tui.config import EngineSettings, ProxySettings, RetrySettings, Settings
    from storycheck_tui.sources.presets import sim_settings

    return Settings(
        source=sim_settings(p["api_url"]),
        retry=dataclasses.replace(RetrySettings(), **p.get("retry", {})),
        proxies=dataclasses.replace(ProxySettings(), **p.get("pacing", {})),
        engine=dataclasses.replace(EngineSettings(), workers=p["threads"], **p.get("engine", {})),
        path="benchmark",
    )


def run(p: dict) -> dict:
    """Checks/s over a steady window; with ``complete``, then run the batch to the end."""
    from storycheck_tui import logs
    from storycheck_tui.engine.wiring import build_runner
    from storycheck_tui.inputs.proxies import parse_proxy_line
    from storycheck_tui.store import batches as ops
    from storycheck_tui.store.db import open_store

    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp:
        logs.setup_logging(Path(tmp) / "logs", stderr_level=logging.CRITICAL,  # as `storycheck run`
                           debug=bool(p.get("debug")))
        store = open_store(p.get("db") or str(Path(tmp) / "bench.db"), pool_size=p["threads"] + 6)
        ops.add_proxies(store, [parse_proxy_line(u) for u in p["proxy_urls"]])
        if p.get("watch"):  # a watch's round: the same profiles, with story history and events
            from storycheck_tui.store import watches

            watches.add_watch(store, "bench", usernames(p["profiles"]), every=3600.0)
            (started,) = watches.start_due_rounds(store)
            batch_id = started.batch_id
        else:
            batch_id = ops.create_batch(store, f"bench-{time.time():.0f}", usernames(p["profiles"]))
        runner = build_runner(store, settings_for(p), batch_ids=[batch_id])

        def read() -> tuple[int, int]:
            b = ops.get_batch(store, batch_id)
            return b.succeeded, b.failed

        cpu0, t0 = cpu_seconds(), time.monotonic()
        runner.start()
        print("STARTED", flush=True)  # benchmarks.profile attaches py-spy now
        try:
            out = measure_window(read, p, threads=lambda: thread_cpu_seconds(thread_role))
            out["window_incomplete"] = ops.get_batch(store, batch_id).remaining == 0
            if p.get("complete"):
                out["done"] = runner.wait_done([batch_id], timeout=p.get("timeout", 300), poll=0.05)
                elapsed = time.monotonic() - t0
                b = ops.get_batch(store, batch_id)
                s = ops.summary(store, batch_id)
                out["error_kinds"] = dict(s.get("error", {}))
                if p.get("retry_failed") and b.failed:  # what the operator does next: `storycheck retry-failed`
                    out["retried"] = runner.retry_failed(batch_id)
                    runner.wait_done([batch_id], timeout=p.get("timeout", 300), poll=0.05)
                    b2 = ops.get_batch(store, batch_id)
                    out.update(after_retry_checked=b2.succeeded, after_retry_failed=b2.failed)
                out.update(profiles=b.total, total_checked=b.succeeded, total_failed=b.failed,
                           remaining=b.remaining, elapsed=elapsed, overall_rate=b.completed / elapsed,
                           overall_cpu_share=(cpu_seconds() - cpu0) / elapsed)
            if p.get("watch"):
                for table in ("event", "watch_story"):
                    out[table] = store.db.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            out["proxies"] = [{"label": v.label, "state": v.state, "successes": v.successes,
                               "failures": v.failures, "rate": round(v.rate, 2)} for v in runner.snapshot().proxies]
        finally:
            runner.stop(0.5)
            store.close()
        out["peak_rss_mb"] = peak_rss_mb()
        return out
