"""The console (``storycheck_tui.ui.app.StorycheckApp``) under measurement (child side).

It runs headless through ``App.run_test()``, but with a driver that reports itself as not
headless, so Textual renders every frame to terminal sequences as it would for a real
terminal (the plain headless driver skips that work); the driver notes the time of each
frame it is handed instead of writing it. "The screen shows it" = the first frame after
the effect is in the app's state.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import cpu_seconds, peak_rss_mb, usernames

T_IMPORT = time.time()


class Frames:
    """perf_counter() times of the frames the app handed to the driver, in order.

    ``watch``: the effect a keypress is awaiting; each frame, as it is written, checks it, and
    ``shown_at`` is the time of the first frame written while it held (the first frame that
    shows it: the frame is rendered from the app's state on the same thread, just before).
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self.watch = None
        self.shown_at: float | None = None

    def frame(self) -> None:
        t = time.perf_counter()
        self.times.append(t)
        if self.watch is not None and self.shown_at is None:
            try:
                if self.watch():
                    self.shown_at = t
            except Exception:
                pass

    def after(self, t: float) -> float | None:
        i = bisect.bisect_left(self.times, t)
        return self.times[i] if i < len(self.times) else None


FRAMES = Frames()
PAUSED: list[float] = []  # seconds the batch was paused by the `p` presses of the key rounds


def _patch_driver() -> None:
    from textual.drivers import headless_driver

    base = headless_driver.HeadlessDriver

    class RenderingDriver(base):  # type: ignore[misc, valid-type]
        @property
        def is_headless(self) -> bool:
            return False

        def write(self, data: str) -> None:
            FRAMES.frame()

        def flush(self) -> None:
            pass

    headless_driver.HeadlessDriver = RenderingDriver  # run_test() looks it up when it starts


def _thread_cpu(tid: int) -> float:
    try:
        return cpu_seconds(f"self/task/{tid}")
    except OSError:
        return 0.0


def _open(p: dict, tmp: str, *, engine: bool, pace: float | None = None):
    from storycheck_tui import logs
    from storycheck_tui.config import EngineSettings, ProxySettings, Settings
    from storycheck_tui.engine.wiring import build_runner
    from storycheck_tui.inputs.proxies import parse_proxy_line
    from storycheck_tui.sources.presets import sim_settings
    from storycheck_tui.store import batches as ops
    from storycheck_tui.store.db import open_store

    setup = logs.setup_logging(Path(tmp) / "logs", stderr_level=None)  # as the console: no stderr
    store = open_store(p.get("db") or str(Path(tmp) / "console.db"), pool_size=22)
    if p.get("proxy_urls"):
        ops.add_proxies(store, [parse_proxy_line(u) for u in p["proxy_urls"]])
    if p.get("profiles"):
        ops.create_batch(store, "bench-console", usernames(p["profiles"]))
    if engine:
        n = max(1, len(p.get("proxy_urls") or [1]))
        rate = pace / n if pace else 1e6
        engine_settings = dataclasses.replace(EngineSettings(), workers=p.get("threads", 16))
        if p.get("api_url"):
            settings = Settings(source=sim_settings(p["api_url"]), proxies=ProxySettings(rate=rate, burst=1),
                                engine=engine_settings)
            runner = build_runner(store, settings)
        else:  # the engine with an in-process source: the load on the console without HTTP's CPU
            settings = Settings(engine=engine_settings)
            runner = build_runner(store, settings, source=ScheduledSource(pace or 1e6))
    else:
        runner = build_runner(store, Settings(), workers=0)
    return setup, store, runner


class ScheduledSource:
    """A story source that answers in process, the n-th answer no earlier than n / ``rate``
    seconds after the first: the load is offered on a schedule, not paced by token buckets.

    Per-proxy buckets (``[proxies] rate``, burst 1) lose every moment a check thread wakes
    late for its token, and in the console's process the UI thread holds the GIL for
    milliseconds at a time. Here a late answer takes its slot at once (catching up), up to
    ``slack`` seconds behind; further behind (the batch was paused) the schedule moves on
    instead of bursting.
    """

    def __init__(self, rate: float, slack: float = 0.05) -> None:
        from benchmarks.scale import InstantSource

        self.answer = InstantSource()
        self.interval = 1.0 / rate
        self.slack = slack
        self.next_at: float | None = None
        self.lock = threading.Lock()

    def check(self, username: str, via):
        with self.lock:
            now = time.monotonic()
            slot = now if self.next_at is None else max(self.next_at, now - self.slack)
            self.next_at = slot + self.interval
        wait = slot - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return self.answer.check(username, via)

    def health(self, via) -> float:
        return 1.0

    def close(self) -> None:
        pass


def _app(runner, store, ring):
    from storycheck_tui.ui.app import StorycheckApp

    app = StorycheckApp(runner, store, ring)
    notes: list[tuple[float, str]] = []
    original = app.notify

    def notify(message, *a, **kw):  # type: ignore[no-untyped-def]
        notes.append((time.perf_counter(), str(message)))
        return original(message, *a, **kw)

    app.notify = notify  # type: ignore[method-assign]
    return app, notes


async def _until(pred, timeout: float = 5.0, step: float = 0.001) -> float | None:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if pred():
            return time.perf_counter()
        await asyncio.sleep(step)
    return None


async def _frame_after(t: float, timeout: float = 5.0) -> float | None:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        f = FRAMES.after(t)
        if f is not None:
            return f
        await asyncio.sleep(0.001)
    return None


def _log_load(stop: threading.Event, per_second: float, ring) -> None:
    """Extra records (no batch id: they go to the ring and the log file, not the database),
    topping up whatever the engine logs to ``per_second`` records in the ring in all."""
    from storycheck_tui import logs

    n = 0
    seq0 = _ring_seq_fast(ring)
    t0 = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - t0) * per_second) - (_ring_seq_fast(ring) - seq0)
        for _ in range(min(due, int(per_second // 20) + 1)):  # at most 50 ms' worth at once
            logs.event(logging.WARNING if n % 4 == 0 else logging.INFO, logs.RETRY_SCHEDULED,
                       f"user{n % 100000:06d}: source error HTTP 503; try 1 failed, retrying in 0.4 s",
                       username=f"user{n % 100000:06d}", proxy="http://127.0.0.1:9", attempt=1, status=503)
            n += 1
        stop.wait(0.01)


def _ring_seq_fast(ring) -> int:
    """The last sequence number in the ring, without building entries (a peek at its buffer)."""
    buf = getattr(ring, "_buf", None)
    if buf is None:
        return _ring_seq(ring)
    try:
        return buf[-1][0]
    except IndexError:
        return 0


# -- keys ---------------------------------------------------------------------------------------------

def _keys(app, notes):
    """(key, prepare, effect) triples; effect() is true once the key has done its work."""
    from storycheck_tui.ui.panes.base import Pane

    main = app.main

    def pane_of(widget):
        node = widget
        while node is not None and not isinstance(node, Pane):
            node = node.parent
        return node

    def focus_in(name):
        return lambda: (pane_of(app.focused) is not None and pane_of(app.focused).id == name)

    def changed(read):
        before = read()
        return lambda: read() != before

    def noted(words):
        n0 = len(notes)
        return lambda: any(any(w in m for w in words) for _, m in notes[n0:])

    log = main.query_one("#log")
    return [
        ("4", lambda: focus_in("log")),
        ("l", lambda: changed(lambda: getattr(log, "min_level", None) if hasattr(log, "min_level")
                              else tuple(getattr(c, "min_level", None) for c in log.walk_children()))),
        ("1", lambda: focus_in("batches")),
        # pause, then resume at once: the load is on for the rest of the round (a single `p`
        # per round left the batch paused every other round, half of the measured window)
        ("p", lambda: noted(("paused", "resumed", "cannot be paused", "not paused"))),
        ("p", lambda: noted(("paused", "resumed", "cannot be paused", "not paused"))),
        ("z", lambda: changed(lambda: main.maximized)),
        ("z", lambda: changed(lambda: main.maximized)),
        ("tab", lambda: changed(lambda: app.focused)),
        ("shift+tab", lambda: changed(lambda: app.focused)),
    ]


async def _press(app, key: str) -> None:
    from textual import events

    char = key if len(key) == 1 else None
    ev = events.Key(key, char)
    ev.set_sender(app)
    app._driver.send_message(ev)


async def _measure_keys(app, notes, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per key: ms from the keypress to the first frame that shows its effect; and, as this
    harness measured it before, to the first frame after a poller noticed the effect."""
    out: dict[str, list[float]] = {}
    polled: dict[str, list[float]] = {}
    paused_since: float | None = None
    for _ in range(rounds):
        for key, make in _keys(app, notes):
            effect = make()
            FRAMES.watch, FRAMES.shown_at = effect, None
            t0 = time.perf_counter()
            await _press(app, key)
            t_state = await _until(effect, timeout=3.0)
            if t_state is None:
                FRAMES.watch = None
                out.setdefault(key, []).append(float("inf"))
                polled.setdefault(key, []).append(float("inf"))
                continue
            # The poller runs between the app's tasks: when the key's action and the frame that
            # shows it run back to back, it notices the effect only after that frame, and the
            # first frame after that is the next one. The frames check the effect themselves.
            t_frame = await _frame_after(t_state, timeout=3.0)
            FRAMES.watch = None
            if key == "p":  # the time the batch spent paused, between a pause and its resume
                if paused_since is None:
                    paused_since = t_state
                else:
                    PAUSED.append(t_state - paused_since)
                    paused_since = None
            shown = FRAMES.shown_at if FRAMES.shown_at is not None else t_frame
            out.setdefault(key, []).append(1000.0 * ((shown or float("inf")) - t0))
            polled.setdefault(key, []).append(1000.0 * ((t_frame or float("inf")) - t0))
            await asyncio.sleep(0.05)
    return out, polled


def _pcts(values: list[float]) -> tuple[float, float]:
    v = sorted(values)
    if not v:
        return float("nan"), float("nan")
    return statistics.median(v), v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]


# -- children -----------------------------------------------------------------------------------------

def under_load(p: dict) -> dict:
    """The console with its engine at ``results_per_s`` and extra log records up to ``records_per_s``."""
    from storycheck_tui import logs

    _patch_driver()
    if p.get("switch_interval"):
        import sys

        sys.setswitchinterval(p["switch_interval"])
    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp:
        setup, store, runner = _open(p, tmp, engine=True, pace=p.get("results_per_s"))
        app, notes = _app(runner, store, setup.ring)
        root = logging.getLogger()
        root.addHandler(setup.ring)
        stop = threading.Event()
        result: dict = {}

        async def drive() -> None:
            async with app.run_test(size=(p.get("width", 180), p.get("height", 50))) as pilot:
                await _until(lambda: FRAMES.times, timeout=30)
                threading.Thread(target=_log_load, args=(stop, p.get("records_per_s", 0), setup.ring),
                                 daemon=True).start()
                await asyncio.sleep(p.get("warmup", 3.0))
                ui_tid = threading.get_native_id()
                seq0, fin0 = _ring_seq(setup.ring), runner.snapshot().finished
                cpu0, ui0, t0 = cpu_seconds(), _thread_cpu(ui_tid), time.perf_counter()
                frames0 = len(FRAMES.times)
                keys, polled = await _measure_keys(app, notes, p.get("rounds", 5))
                rest = p.get("min_seconds", 0) - (time.perf_counter() - t0)
                if rest > 0:
                    await asyncio.sleep(rest)
                dt = time.perf_counter() - t0
                result.update(seconds=dt, cpu_share=(cpu_seconds() - cpu0) / dt,
                              frames_per_s=(len(FRAMES.times) - frames0) / dt,
                              ui_cpu_share=(_thread_cpu(ui_tid) - ui0) / dt,
                              records_per_s=(_ring_seq(setup.ring) - seq0) / dt,
                              results_per_s=(runner.snapshot().finished - fin0) / dt, keys=keys, polled=polled,
                              paused_s=sum(PAUSED),
                              ticks_ms=[1000 * x for x in app.tick_seconds[-200:]])
                stop.set()
                await pilot.press("ctrl+q")

        try:
            runner.start()
            asyncio.run(drive())
        finally:
            stop.set()
            runner.stop(1.0)
            root.removeHandler(setup.ring)
            store.close()
            logs.reset_logging()
    allv = [x for v in result["keys"].values() for x in v]
    p50, p95 = _pcts(allv)
    polled_p50, polled_p95 = _pcts([x for v in result["polled"].values() for x in v])
    result.update(p50_ms=p50, p95_ms=p95, presses=len(allv), polled_p50_ms=polled_p50, polled_p95_ms=polled_p95,
                  per_key={k: _pcts(v) for k, v in result["keys"].items()}, peak_rss_mb=peak_rss_mb())
    del result["keys"], result["polled"]
    return result


def _ring_seq(ring) -> int:
    snap = ring.snapshot()
    return snap[-1].seq if snap else 0


def soak(p: dict) -> dict:
    """The console with its engine flat out on a big batch for ``seconds``: peak RSS."""
    _patch_driver()
    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp:
        setup, store, runner = _open(p, tmp, engine=True)
        app, _notes = _app(runner, store, setup.ring)
        out: dict = {}

        async def drive() -> None:
            async with app.run_test(size=(180, 50)) as pilot:
                await asyncio.sleep(p["seconds"])
                out["checks"] = runner.snapshot().finished
                out["log_records"] = _ring_seq(setup.ring)
                await pilot.press("ctrl+q")

        try:
            runner.start()
            asyncio.run(drive())
        finally:
            runner.stop(1.0)
            store.close()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def cold_start(p: dict) -> dict:
    """From process start (``spawned_at``, the parent's clock) to the first frame, and to the
    first frame with every pane filled from the database (batches, results window, proxies)."""
    t_imports = time.time()
    _patch_driver()
    from storycheck_tui.ui.table import Table

    from storycheck_tui import logs
    from storycheck_tui.engine.wiring import build_runner
    from storycheck_tui.store.db import open_store
    from storycheck_tui.config import Settings

    t_ready = time.time()
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="storycheck-bench-") as tmp:
        setup = logs.setup_logging(Path(tmp) / "logs", stderr_level=None)
        store = open_store(p["db"])
        runner = build_runner(store, Settings(), workers=0)  # `storycheck --db FILE`: watch-only
        app, _notes = _app(runner, store, setup.ring)
        t_open = time.time()

        def full() -> bool:
            try:
                tables = {t.id or t.parent.id: t.row_count for t in app.main.query(Table)}
            except Exception:
                return False
            res = [n for k, n in tables.items() if k and "result" in k]
            bat = [n for k, n in tables.items() if k and "batch" in k]
            return bool(res and res[0] > 0 and bat and bat[0] > 0)

        async def drive() -> None:
            async with app.run_test(size=(180, 50)) as pilot:
                t_state = await _until(full, timeout=60)
                first = FRAMES.times[0] if FRAMES.times else None
                f_full = await _frame_after(t_state) if t_state else None
                now_pc, now_wall = time.perf_counter(), time.time()
                to_wall = lambda pc: now_wall - (now_pc - pc)  # noqa: E731
                out["first_frame"] = to_wall(first) if first else None
                out["full_frame"] = to_wall(f_full) if f_full else None
                await pilot.press("ctrl+q")

        runner.start()
        try:
            asyncio.run(drive())
        finally:
            runner.stop(1.0)
            store.close()
    t0 = p["spawned_at"]
    return {"imports_s": t_ready - t0, "python_start_s": T_IMPORT - t0, "open_s": t_open - t0,
            "first_frame_s": (out["first_frame"] - t0) if out.get("first_frame") else None,
            "full_frame_s": (out["full_frame"] - t0) if out.get("full_frame") else None,
            "peak_rss_mb": peak_rss_mb(), "textual_import_s": t_ready - t_imports}
