"""The console's pictures: the scenes the snapshot tests compare and the README shows.

    python -m storycheck_tui.ui.screenshots [OUT_DIR]      (default: ./screenshots)

Each scene is the fixed sample state (:mod:`storycheck_tui.ui.sample`) plus a few keys;
the same scenes feed ``tests/test_ui_snapshots.py``, so the pictures in the README are the
ones the tests hold still.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from storycheck_tui.states import BatchState, ErrorKind, ProxyState

#: the file the "new batch" scene tries to import (line 3 is bad)
BAD_FILE = "alice\nbob\n[/bold]bad user\ncarol\n"

RunBefore = Callable[[object], Awaitable[None]] | None


async def _settle(pilot) -> None:
    app = pilot.app
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def _help(pilot) -> None:
    await pilot.press("question_mark")
    await _settle(pilot)


async def _detail(pilot) -> None:
    from storycheck_tui.ui.panes.results import ResultsPane

    await pilot.press("2")
    pane = pilot.app.main.query_one(ResultsPane)
    row = next(i for i, j in enumerate(pane.window.rows) if j.error_kind == ErrorKind.UNEXPECTED)
    pane.target().move_cursor(row=row, animate=False)
    await pilot.press("enter")
    await _settle(pilot)


async def _new_batch_error(pilot) -> None:
    await pilot.press("n")
    await pilot.pause()
    pilot.app.screen.query_one("#path").value = "leads.txt"
    await pilot.press("ctrl+s")
    await _settle(pilot)


async def _disabled_proxy(pilot) -> None:
    from storycheck_tui.ui.panes.proxies import ProxiesPane

    await pilot.press("3")
    pane = pilot.app.main.query_one(ProxiesPane)
    key = next(p.key for p in pane.proxies if p.state == ProxyState.DISABLED)
    pane.target().move_cursor(row=pane.target().get_row_index(key), animate=False)
    await _settle(pilot)


async def _paused_batch(pilot) -> None:
    from storycheck_tui.ui.panes.batches import BatchesPane

    await pilot.press("1")
    pane = pilot.app.main.query_one(BatchesPane)
    paused = next(v for v in pane.batches if v.state == BatchState.PAUSED)
    pane.select(paused.id)
    await _settle(pilot)
    pilot.app.refresh_now()
    await _settle(pilot)


async def _sorted(pilot) -> None:
    await pilot.press("1", "s", "s", "s", "s", "S")  # batches by OK, most first
    await pilot.press("2", "s", "S")  # results by username, Z to A (the database sorts)
    await _settle(pilot)


async def _charts(pilot) -> None:
    await pilot.press("g")
    await _settle(pilot)


async def _watches(pilot) -> None:
    from storycheck_tui.ui.sample_watches import add_sample_watches

    await _settle(pilot)
    add_sample_watches(pilot.app.store)
    pilot.app.runner.refresh()  # the engine's batch board has the rounds now, not at its next re-read
    pilot.app.refresh_now()
    await pilot.press("w")
    await _settle(pilot)


async def _main(pilot) -> None:
    await _settle(pilot)


def _source_trouble(store) -> None:
    """The workers report their pace (an operator capped it) and one an open circuit; knobs set."""
    from storycheck_tui.store import knobs
    from storycheck_tui.store.models import Worker

    knobs.set_knob(store, knobs.PACE_CAP, 30.0)
    knobs.set_knob(store, knobs.THREADS, 8)
    for host, pace, circuit, why in (
            ("app-01", 30.0, "open", "source error HTTP 503: upstream connect error"),
            ("app-02", 28.4, "closed", None)):
        Worker.update(pace=pace, pace_key="api.example.net#5f1c2a9b0d3e", threads=8, circuit=circuit,
                      circuit_reason=why, pace_reason="pace cap 30/s set by an operator: 52.0/s cut to 30.0/s"
                      ).where(Worker.host == host).execute()


async def _source_down(pilot) -> None:
    await _settle(pilot)
    _source_trouble(pilot.app.store)
    pilot.app.refresh_now()
    await _settle(pilot)


async def _knobs(pilot) -> None:
    await _source_down(pilot)
    await pilot.press("K")
    await _settle(pilot)


@dataclass(frozen=True)
class Scene:
    name: str
    title: str
    size: tuple[int, int]
    run_before: RunBefore
    options: tuple[tuple[str, object], ...] = ()  # StorycheckApp keyword arguments

SCENES = [
    Scene("main", "The console at 120x40: batches, proxies, results of the selected batch, log, workers",
          (120, 40), _main),
    Scene("main-80x24", "The same at 80x24", (80, 24), _main),
    Scene("help", "? lists every key with its binding id", (120, 40), _help),
    Scene("detail", "enter on a result: attempt history, error, traceback, log lines", (120, 40), _detail),
    Scene("new-batch-error", "n: a file error shown as FILE:LINE: reason", (120, 40), _new_batch_error),
    Scene("disabled-proxy", "A proxy disabled with d (pane 3 selected)", (120, 40), _disabled_proxy),
    Scene("paused-batch", "A paused batch selected: its reason and its results", (120, 40), _paused_batch),
    Scene("sorted", "s / S / a header click: batches by OK (most first), results by username (Z to A)", (120, 40),
          _sorted),
    Scene("charts", "g: live charts of the selected batch (by outcome, failures), 429s, pace and each worker",
          (120, 40), _charts),
    Scene("watches", "w: each watchlist with its interval, next round, last round and new stories", (120, 40),
          _watches),
    Scene("source-down", "The workers' pace and an open circuit in the status bar, with why, and the knobs in force",
          (120, 40), _source_down),
    Scene("source-down-80x24", "The same at 80x24", (80, 24), _source_down),
    Scene("knobs", "K: runtime knobs (pace cap, threads per worker) for every worker", (120, 40), _knobs),
    Scene("read-only", "storycheck --read-only: the steering keys leave the footer", (120, 40), _main,
          (("read_only", True), ("note", "read-only: this console watches and changes nothing (checks run only in "
                                          "`storycheck worker` processes)"))),
]


def scene(name: str) -> Scene:
    return next(s for s in SCENES if s.name == name)


async def _shoot(s: Scene, out: Path) -> Path:
    from storycheck_tui.ui.sample import sample_app, sample_copy

    with tempfile.TemporaryDirectory(prefix="storycheck-shot-") as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            Path("leads.txt").write_text(BAD_FILE, encoding="utf-8")
            store = sample_copy(tmp)
            app, runner = sample_app(store, **dict(s.options))
            try:
                async with app.run_test(size=s.size) as pilot:
                    if s.run_before:
                        await s.run_before(pilot)
                    await pilot.pause()
                    target = out / f"{s.name}.svg"
                    target.write_text(app.export_screenshot(title=f"storycheck — {s.name}"), encoding="utf-8")
            finally:
                runner.stop(0)
                store.close()
        finally:
            os.chdir(cwd)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m storycheck_tui.ui.screenshots",
                                 description="Draw the console's scenes as SVG files.")
    ap.add_argument("out_dir", nargs="?", default="screenshots", help="where to write them (default: ./screenshots)")
    out = Path(ap.parse_args(argv).out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for s in SCENES:
        path = asyncio.run(_shoot(s, out))
        print(f"{path}  ({s.title})")
    print()
    print("README markdown:")
    for s in SCENES:
        print(f"![{s.title}](screenshots/{s.name}.svg)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
