"""`run`, `worker`, `sim` and the headless demo: commands that drive the engine.

Owner: the command's main thread. It alone holds the signal flags (:class:`_Stop`), the
progress line and the watch on why nothing can be sent (:class:`_Stall`); the engine's
threads are the runner's.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from argparse import Namespace

from storycheck_tui import logs
from storycheck_tui.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from storycheck_tui.cli.common import create_batch_from, import_proxies, read_profiles, settings_from, start_logging
from storycheck_tui.cli.knobs import in_force_line
from storycheck_tui.cli.progress import Progress, fmt_duration
from storycheck_tui.engine.wiring import Engine, build_monitor, open_engine
from storycheck_tui.states import BatchState
from storycheck_tui.store import batches as ops
from storycheck_tui.store.db import Store
from storycheck_tui.store.spend import spend_of
from storycheck_tui.words import plural


class _Stop:
    """SIGINT/SIGTERM set a flag; the main loop then stops the runner with its grace period.

    A second signal cuts the grace short (``on_again``: the runner's ``hurry``) but still lets
    the runner hand unfinished checks back; only a third one interrupts outright. Used as a
    context manager: the previous handlers are back when the command is done.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None
        self.on_again = None
        self._again = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "_Stop":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            if handler is not None:  # None: installed outside Python, nothing we can put back
                signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            self._again += 1
            if self.on_again is not None and self._again == 1:
                self.on_again()  # stop waiting for in-flight checks; leases are still released
                return
            raise KeyboardInterrupt
        self.signal = signum
        self.event.set()


def run_command(args: Namespace) -> int:
    settings = settings_from(args)
    log = start_logging(args)
    plist = read_profiles(args)  # input errors before anything is written

    def prepare(store: Store) -> list[int]:
        import_proxies(store, args.proxies)
        return [create_batch_from(store, args, plist)]

    with open_engine(settings, log, db=getattr(args, "db", None), prepare=prepare) as engine:
        _say_knobs(engine.store)
        return _drive(engine, settings.engine.grace_seconds)


class _Stall:
    """Watches the engine's ``blocked_reason`` from the main thread of `run` and `worker`: says
    when nothing can be sent and no proxy can come back by itself (``hopeless``), or when
    nothing was sendable and nothing checked for ``[engine] stall_limit`` seconds."""

    def __init__(self, runner, limit: float) -> None:
        self.runner = runner
        self.limit = limit
        self.reason: str | None = None  # why nothing can be sent, as last seen
        self.hopeless = False
        self._done = -1
        self._since = time.monotonic()

    def over(self, done: int) -> bool:
        """True when the wait is over: no proxy can come back, or ``limit`` seconds without progress."""
        self.reason = self.runner.blocked_reason()
        self.hopeless = self.reason is not None and self.runner.hopeless()
        if self.hopeless:
            return True
        if done != self._done or self.reason is None:
            self._done, self._since = done, time.monotonic()
            return False
        return time.monotonic() - self._since >= self.limit

    def line(self, batch_id: int | None) -> str:
        """The one line `run` (or `worker --until-idle`) ends with."""
        head = ("no proxy can come back by itself" if self.hopeless
                else f"no progress for {self.limit:g} s ([engine] stall_limit)")
        fix = ("; give the proxies new credentials (storycheck proxies add FILE) or enable them (storycheck "
               "proxies enable ID)" if self.hopeless else "")
        more = f" (continue with: storycheck worker --batch {batch_id})" if batch_id is not None else ""
        return (f"storycheck: {head}: {logs.clean(self.reason or '')}{fix}; unfinished checks went back to the "
                f"queue{more}")


def _drive(engine: Engine, grace: float) -> int:
    store, runner, batch_ids = engine.store, engine.runner, engine.batch_ids or []
    progress = Progress()
    started = time.monotonic()
    stall = _Stall(runner, engine.settings.engine.stall_limit)
    stalled = False  # nothing could be sent: no proxy can come back, or stall_limit without progress
    with _Stop() as stop:
        stop.on_again = runner.hurry
        runner.start()
        try:
            while not stop.event.is_set():
                if runner.wait_done(batch_ids, timeout=0.5):
                    break
                if runner.stopping:  # an engine thread crashed: it said why in the log
                    break
                batch = ops.get_batch(store, batch_ids[0])
                if stall.over(batch.completed):
                    stalled = True
                    break
                progress.update(batch, runner.snapshot().rate, blocked=stall.reason)
        finally:
            progress.update(ops.get_batch(store, batch_ids[0]), runner.snapshot().rate, blocked=stall.reason,
                            force=True)
            progress.close()
            runner.stop(grace)
    elapsed = time.monotonic() - started
    if stalled:
        print(stall.line(batch_ids[0]), file=sys.stderr)
        return EXIT_FAILED
    if stop.event.is_set():
        print(f"storycheck: stopped by signal; unfinished checks went back to the queue "
              f"(continue with: storycheck worker --batch {batch_ids[0]})", file=sys.stderr)
        return EXIT_INTERRUPTED
    return print_summary(store, batch_ids, elapsed, engine.log)


def print_summary(store: Store, batch_ids: list[int], elapsed: float, log: logs.Logging | None = None) -> int:
    failed_any = False
    for bid in batch_ids:
        b = ops.get_batch(store, bid)
        s = ops.summary(store, bid)
        rate = b.completed / elapsed if elapsed > 0 else 0.0
        print(f"batch {b.id} {b.name!r}: {b.state}; {b.completed}/{b.total} checked in {fmt_duration(elapsed)} "
              f"({rate:.1f} checks/s): {b.succeeded} succeeded, {b.failed} failed"
              + (f", {b.cancelled} cancelled" if b.cancelled else ""))
        for outcome, n in sorted(s["outcome"].items(), key=lambda kv: -kv[1]):
            print(f"  {outcome:<20} {n}")
        for kind, n in sorted(s["error"].items(), key=lambda kv: -kv[1]):
            print(f"  error {kind:<14} {n}")
        spent = spend_of(store, bid)
        budget = f" of a budget of {b.max_requests}" if b.max_requests is not None else ""
        print(f"  requests sent {b.requests}{budget}"
              + (": " + ", ".join(f"{k} {n}" for k, n in spent.items()) if spent else ""))
        if b.reason and b.state != BatchState.FINISHED:
            print(f"  {b.state}: {logs.clean(b.reason)}")
        remaining = b.remaining
        if remaining and b.state != BatchState.CANCELLED:
            print(f"  {plural(remaining, 'profile')} not checked yet (batch is {b.state})")
            failed_any = True
        if b.failed:
            failed_any = True
    if log is not None and log.file_path:
        print(f"log: {log.file_path}")
    return EXIT_FAILED if failed_any else EXIT_OK


def worker_command(args: Namespace) -> int:
    settings = settings_from(args)
    log = start_logging(args)

    def prepare(store: Store) -> list[int] | None:
        import_proxies(store, args.proxies)
        return [ops.find_batch(store, ref).id for ref in args.batch] if args.batch else None

    with open_engine(settings, log, db=getattr(args, "db", None), prepare=prepare) as engine:
        runner = engine.runner
        monitor = build_monitor(engine.store) if engine.batch_ids is None else None  # watch rounds and webhooks
        with _Stop() as stop:
            stop.on_again = runner.hurry
            runner.start()
            if monitor:
                monitor.start()
            print(f"worker {runner.worker_id}: {runner.threads} check threads on {engine.store.display}", file=sys.stderr)
            _say_knobs(engine.store)
            stall = _Stall(runner, settings.engine.stall_limit)
            stalled = said_hopeless = False
            commits = runner.writer.commits
            try:
                while not stop.event.is_set():
                    # each group commit (every commit_every, and at once when a batch's last check
                    # ends): `idle` is read from the database, where a job is pending or running
                    # until its result or hand-back is committed, so no second look is needed
                    commits = runner.writer.wait_commit(commits, 0.5)
                    if runner.stopping or stop.event.is_set():
                        break
                    over = stall.over(runner.writer.finished)
                    if not args.until_idle and stall.hopeless != said_hopeless:  # a serving worker stays and says so
                        said_hopeless = stall.hopeless
                        _say_hopeless(runner.worker_id, stall.reason if said_hopeless else None)
                    if args.until_idle:
                        if runner.idle():
                            break
                        if over:  # a script waits for this worker: it must not wait forever
                            stalled = True
                            break
            finally:
                if monitor:
                    monitor.stop()
                runner.stop(settings.engine.grace_seconds)
        print(f"worker {runner.worker_id}: stopped after {plural(runner.snapshot().finished, 'check')}", file=sys.stderr)
        if stalled:
            print(stall.line(None), file=sys.stderr)
            return EXIT_FAILED
        if runner.crashed:
            print("storycheck: the worker stopped on an internal error; the log has the traceback", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_INTERRUPTED if stop.event.is_set() and stop.signal == signal.SIGINT else EXIT_OK


def _say_knobs(store: Store) -> None:
    """The runtime knobs in force, if any: set once, they stay in the database for later runs."""
    line = in_force_line(store)
    if line:
        print(line, file=sys.stderr)


def _say_hopeless(worker_id: str, reason: str | None) -> None:
    """A serving `worker` whose proxies cannot come back by themselves keeps running (new
    credentials or an operator's enable reach it within a second, with no restart): one
    record and one line on stderr when that starts, one when it ends."""
    if reason is not None:
        text = (f"no proxy can come back by itself: {logs.clean(reason)}; checks wait for new credentials "
                f"(storycheck proxies add FILE) or an operator's enable (storycheck proxies enable ID)")
        logs.event(logging.ERROR, logs.NO_PROXY, text)
    else:
        text = "a proxy can be used again; checks resume"
        logs.event(logging.INFO, logs.PROXY_RECOVERED, text)
    print(f"worker {worker_id}: {text}", file=sys.stderr)


def sim_command(args: Namespace) -> int:
    from storycheck_tui.sim.main import run_sim_command

    return run_sim_command(port=args.port, proxies=args.proxies, seed=args.seed, profiles_file=args.profiles,
                           host=args.host, rate=args.rate, error_rate=args.error_rate)


def demo_headless(args: Namespace) -> int:
    """The simulator, faulty demo proxies and a demo batch through the real engine, headless."""
    from storycheck_tui.demo import demo_run

    log = start_logging(args)
    with demo_run(args.db, args.profiles, log_sink=log.sink) as run:
        print(run.hello, file=sys.stderr)
        with open_engine(run.demo.settings, log, store=run.store, prepare=lambda store: [run.batch_id]) as engine:
            return _drive(engine, 5.0)
