"""Open the console: on a database (``storycheck``), or on the built-in demo (``storycheck demo``)."""

from __future__ import annotations

import logging
import os
from argparse import Namespace

from storycheck_tui import logs
from storycheck_tui.engine.runner import Runner
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


def launch_console(args: Namespace) -> int:
    from storycheck_tui.cli.common import import_proxies, open_db, settings_from, start_logging
    from storycheck_tui.engine.wiring import build_monitor, build_runner

    settings = settings_from(args)
    read_only = read_only_wanted(args)
    if read_only and getattr(args, "proxies", None):
        from storycheck_tui.errors import InputError

        raise InputError("--proxies adds proxies, and a read-only console changes nothing: leave one out")
    setup = start_logging(args, console=True)
    store = open_db(args, settings, log_sink=setup.sink)
    try:
        if read_only:  # no checks from here either: they write results
            return run_console(build_runner(store, settings, workers=0), store, setup.ring, note=READ_ONLY_NOTE,
                               read_only=True)
        import_proxies(store, getattr(args, "proxies", None))
        if settings.source.url:
            monitor = build_monitor(store).start()  # watch rounds and webhooks, as a worker runs them
            try:
                return run_console(build_runner(store, settings), store, setup.ring)
            finally:
                monitor.stop()
        return run_console(build_runner(store, settings, workers=0), store, setup.ring, note=WATCH_ONLY_NOTE)
    finally:
        store.close()


def launch_demo(args: Namespace) -> int:
    from storycheck_tui.cli.common import start_logging
    from storycheck_tui.demo import demo_run
    from storycheck_tui.engine.wiring import build_runner

    setup = start_logging(args, console=True)
    with demo_run(getattr(args, "db", None), getattr(args, "profiles", 500) or 500, log_sink=setup.sink) as run:
        return run_console(build_runner(run.store, run.demo.settings), run.store, setup.ring,
                           hello=run.hello + ". Press ? for keys.")


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
