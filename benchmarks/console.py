"""Sections 5 and 6: the console under load, and its cold start on a 100k database."""

from __future__ import annotations

import importlib
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import run_child
from benchmarks.report import Section, fmt, pct

RESULTS_PER_S = 500
RECORDS_PER_S = 2000
#: check threads of the console's engine. In the console's process each check waits for the GIL
#: at its blocking points while the UI thread renders: 16 threads got through about 300-330
#: of the 500 results/s asked (the engine alone: 510/s), 32 get through what is asked.
THREADS = 32


def _console_available() -> str | None:
    try:
        importlib.import_module("storycheck_tui.ui.app")
    except Exception as exc:  # the console is being built in parallel
        return f"storycheck_tui.ui.app cannot be imported here: {type(exc).__name__}: {exc}"
    return None


def under_load(quick: bool) -> Section:
    s = Section("console", "5. Console under load")
    missing = _console_available()
    if missing:
        s.error = missing
        return s
    rounds = 4 if quick else 12
    proxies = 10  # in the database (the proxies pane shows them); the source's schedule paces the load
    s.setup = (f"The console app (180x50) on a 100,000-profile batch, its engine ({THREADS} threads) with an "
               f"in-process source that answers on a schedule of {RESULTS_PER_S} results/s (so the console process "
               f"carries the engine's own work and the console's, not HTTP's; a late answer catches up, up to 50 ms), "
               f"plus a thread topping up what the engine logs to {RECORDS_PER_S:,} "
               f"log records/s in all (counted in the console's log ring). Run headless with Textual's "
               f"`run_test()`, but every frame rendered to terminal output as on a real terminal. "
               f"Keypress -> effect: the key is sent as the "
               f"terminal driver sends it; the time until the first frame that shows its effect, i.e. the "
               f"first frame written while the effect is in the app's state (each frame checks it as it is "
               f"written) ({rounds} rounds of: `4` focus log, `l` log level, `1` focus batches, `p` pause and `p` resume "
               f"(each a database write in a thread, then the notice; the batch is paused only between the "
               f"two), `z` zoom, `z` unzoom, `tab`, `shift+tab`). "
               f"CPU share: the console process (engine included) and its UI thread alone, over the key rounds.")
    r = run_child("console_child:under_load", {
        "proxy_urls": [f"http://127.0.0.1:{9000 + i}" for i in range(proxies)], "profiles": 100_000,
        "results_per_s": RESULTS_PER_S, "records_per_s": RECORDS_PER_S, "rounds": rounds, "threads": THREADS,
        "warmup": 2.0 if quick else 3.0, "min_seconds": 5.0 if quick else 15.0}, timeout=300)
    s.headers = ["key", "p50 ms", "p95 ms"]
    for key, (p50, p95) in r["per_key"].items():
        s.rows.append([f"`{key}`", f"{p50:.0f}", f"{p95:.0f}"])
    s.rows.append(["**all keys**", f"**{r['p50_ms']:.0f}**", f"**{r['p95_ms']:.0f}**"])
    ticks = sorted(r["ticks_ms"])
    s.notes = [
        f"Load achieved: {fmt(r['results_per_s'])} results/s and {fmt(r['records_per_s'])} log records/s into the "
        f"ring over {r['seconds']:.0f} s; {r['frames_per_s']:.1f} frames/s rendered."
        + (f" The `p` presses kept the batch paused for {r['paused_s']:.1f} s of the window: "
           f"{fmt(r['results_per_s'] * r['seconds'] / (r['seconds'] - r['paused_s']))} results/s while it ran."
           if r.get("paused_s") and r["paused_s"] < r["seconds"] else ""),
        f"CPU: the console process used {pct(r['cpu_share'], 0)} of one core (engine threads included); its UI "
        f"thread alone {pct(r['ui_cpu_share'], 0)}.",
        f"The 4-per-second redraw (`tick`) took p50 {statistics.median(ticks):.1f} ms, max {ticks[-1]:.1f} ms."
        if ticks else "",
        f"Peak RSS of the console process: {r['peak_rss_mb']:.0f} MB.",
        f"Measured as this benchmark did before (the first frame after a poller, which runs between the app's "
        f"tasks, noticed the effect: one frame late whenever the key's action and the frame showing it run back "
        f"to back): p50 {r['polled_p50_ms']:.0f} ms, p95 {r['polled_p95_ms']:.0f} ms."
        if "polled_p50_ms" in r else "",
    ]
    s.headline = [f"keypress -> frame p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms (target p95 <= 50 ms) "
                  f"at {fmt(r['results_per_s'])} results/s (of {RESULTS_PER_S} offered) + {fmt(r['records_per_s'])} records/s; console CPU "
                  f"{pct(r['cpu_share'], 0)} of a core (UI thread {pct(r['ui_cpu_share'], 0)})"]
    return s


def cold_start(quick: bool) -> Section:
    s = Section("coldstart", "6. Cold start")
    missing = _console_available()
    if missing:
        s.error = missing
        return s
    reps = 1 if quick else 3
    n, finished = 100_000, 90_000
    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp:
        db = str(Path(tmp) / "cold.db")
        prep = run_child("scale:prepare_db", {"db": db, "profiles": n, "finished": finished}, timeout=300)
        runs = []
        for _ in range(reps):
            runs.append(run_child("console_child:cold_start", {"db": db, "spawned_at": time.time()}, timeout=120))
    s.setup = (f"A SQLite database as a big run leaves it: a {n:,}-profile batch, {prep['finished']:,} of it checked "
               f"(results, ~{int(prep['finished'] * 0.9):,} story rows, one log row per check), 8 proxies. The console "
               f"opened on it as `storycheck --db FILE` does (watch-only), in a fresh process; times from the "
               f"process being spawned. Full frame: the first frame after the batches table and the results window "
               f"(read from the database in a thread) are filled. {reps} run(s), median.")
    def med(key: str) -> float:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(vals) if vals else float("nan")
    s.headers = ["milestone", "seconds after spawn (median)", "runs"]
    for key, label in (("python_start_s", "interpreter up, benchmark module imported"),
                       ("imports_s", "Textual and the engine imported"),
                       ("open_s", "database opened, engine (watch-only) built"),
                       ("first_frame_s", "first frame"), ("full_frame_s", "**first full frame**")):
        s.rows.append([label, f"{med(key):.2f}", ", ".join(f"{r[key]:.2f}" for r in runs if r.get(key) is not None)])
    s.notes = [f"Peak RSS of the console process: {max(r['peak_rss_mb'] for r in runs):.0f} MB."]
    s.headline = [f"first full frame {med('full_frame_s'):.2f} s after spawn with a {n:,}-profile database "
                  f"(first frame {med('first_frame_s'):.2f} s)"]
    return s
