"""Open the console: on a database (``storycheck``), or on the built-in demo (``storycheck demo``).

The engine comes from the composition root (:func:`storycheck_tui.engine.wiring.open_engine`);
settings and logging come from the caller, so nothing here reaches back up into the CLI.
"""

from __future__ import annotations

import logging
import os
from argparse import Namespace
from typing import Callable

from storycheck_tui import logs
from storycheck_tui.config import Settings
from storycheck_tui.engine.runner import Runner
from storycheck_tui.engine.wiring import build_monitor, open_engine
from storycheck_tui.store.db import Store

WATCH_ONLY_NOTE = ("watch-only: no [source] configured (--config FILE), so checks run only in "
                   "`storycheck worker` processes")
READ_ONLY_NOTE = ("read-only: this console watches and changes nothing (checks run only in `storycheck worker` "
                  "processes)")
READ_ONLY_ENV = "STORYCHECK_READ_ONLY"


def read_only_wanted(args: Namespace) -> bool:
    """--read-only, or STORYCHECK_READ_ONLY set to 1 / true / yes."""
    return bool(getattr(args, "read_only", False)) or os.environ.get(READ_ONLY_ENV, "").strip().lower() in (
        "1", "true", "yes")


def launch_console(settings: Settings, log: logs.Logging, *, db: str | None = None,
                   prepare: Callable[[Store], None] | None = None, read_only: bool = False) -> int:
    """The console on ``db``; watch-only when no ``[source]`` is configured; ``read_only``
    watches and changes nothing (no checks, no ``prepare``: they write)."""
    if read_only:
        with open_engine(settings, log, db=db, watch_only=True) as engine:
            return run_console(engine.runner, engine.store, log.ring, note=READ_ONLY_NOTE, read_only=True)
    watch_only = not settings.source.url
    with open_engine(settings, log, db=db, prepare=prepare, watch_only=watch_only) as engine:
        if watch_only:
            return run_console(engine.runner, engine.store, log.ring, note=WATCH_ONLY_NOTE)
        monitor = build_monitor(engine.store).start()  # watch rounds and webhooks, as a worker runs them
        try:
            return run_console(engine.runner, engine.store, log.ring)
        finally:
            monitor.stop()


def launch_demo(log: logs.Logging, *, db: str | None = None, profiles: int = 500) -> int:
    from storycheck_tui.demo import demo_run

    with demo_run(db, profiles, log_sink=log.sink) as run:
        with open_engine(run.demo.settings, log, store=run.store) as engine:
            return run_console(engine.runner, engine.store, log.ring, hello=run.hello + ". Press ? for keys.")


def run_console(runner: Runner, store: Store, ring, *, note: str | None = None, hello: str | None = None,
                read_only: bool = False) -> int:
    """Start the engine, run the app until quit, and make sure the engine is stopped after."""
    from storycheck_tui.ui.app import StorycheckApp
    from storycheck_tui.ui.keymap import load_user_keymap

    keys, problem = load_user_keymap()
    messages = [m for m in (problem,) if m]
    app = StorycheckApp(runner, store, ring, note=note, keymap_overrides=keys, startup_messages=messages,
                        hello=hello, read_only=read_only)
    # Records of other libraries (warnings and up) go to the log pane, never to the terminal.
    root = logging.getLogger()
    root.addHandler(ring)
    logs.set_stderr_enabled(False)
    runner.start()
    try:
        app.run()
    finally:
        # The app stops the engine on quit; this covers a crash or a signal (it only joins
        # when the engine is stopped already).
        runner.stop(1.0)
        root.removeHandler(ring)
        logs.set_stderr_enabled(True)
    return 0
