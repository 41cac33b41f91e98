"""The argument parser: every command, its flags and its help text."""

from __future__ import annotations

import argparse

from storycheck_tui import __version__


def _common(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """Global flags, accepted before or after the command (a subcommand never resets them)."""
    default = None if top else argparse.SUPPRESS
    p.add_argument("--db", metavar="URL", default=default,
                   help="database: a path, sqlite:///PATH or postgresql://… (env STORYCHECK_DB)")
    p.add_argument("--config", metavar="FILE", default=default,
                   help="settings file (TOML): [source], [retry], [proxies], [engine]")
    p.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                   help="log warnings (-v) or everything (-vv, implies --debug) to stderr")
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="also log the start of every check (DEBUG records) to the log file and the console")


def build_parser() -> argparse.ArgumentParser:
    from storycheck_tui.cli import console, knobs, manage, run, source_test
    from storycheck_tui.store import knobs as store_knobs

    parser = argparse.ArgumentParser(
        prog="storycheck",
        description="Check batches of social-media profiles for active stories. Without a command, opens the console.")
    parser.add_argument("--version", action="version", version=f"storycheck {__version__}")
    _common(parser, top=True)
    parser.add_argument("--proxies", metavar="FILE", help="console: add the proxies in FILE first")
    parser.add_argument("--read-only", action="store_true",
                        help="console: watch, never steer (no key changes anything; also STORYCHECK_READ_ONLY=1)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def cmd(name: str, handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _common(p)
        p.set_defaults(handler=handler)
        return p

    def batch_input(p: argparse.ArgumentParser) -> None:
        p.add_argument("profiles", metavar="PROFILES", help="a .txt (one username per line) or .csv file")
        p.add_argument("--name", help="batch name (default: the file name)")
        p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
        p.add_argument("--skip-invalid", action="store_true", help="skip invalid lines instead of refusing the file")
        p.add_argument("--max-requests", type=int, metavar="N",
                       help="pause the batch once it has sent N requests to the source (resume goes on)")

    p = cmd("run", run.run_command, "create a batch from PROFILES and check it to the end here")
    batch_input(p)
    p.add_argument("--proxies", metavar="FILE", help="add the proxies in FILE (host:port, host:port:user:pass or URLs)")
    p.add_argument("--workers", type=int, metavar="N", help="check threads (default from config, 16)")

    p = cmd("add", manage.add_command, "create a batch from PROFILES for workers to check; prints its id")
    batch_input(p)
    p.add_argument("--json", action="store_true", help="print the new batch as one JSON object")

    p = cmd("worker", run.worker_command, "check queued batches until stopped (several may share one database)")
    p.add_argument("--workers", type=int, metavar="N", help="check threads (default from config, 16)")
    p.add_argument("--until-idle", action="store_true", help="exit when nothing is left to check")
    p.add_argument("--batch", action="append", metavar="B", help="only this batch (id or name); repeatable")
    p.add_argument("--proxies", metavar="FILE", help="add the proxies in FILE first")

    p = cmd("batches", manage.batches_command, "list batches with their progress")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    for name, handler, text in (("pause", manage.pause_command, "pause a batch (workers stop taking its profiles)"),
                                ("resume", manage.resume_command, "resume a paused batch"),
                                ("cancel", manage.cancel_command, "cancel a batch: its unchecked profiles are dropped"),
                                ("retry-failed", manage.retry_failed_command, "check a batch's failed profiles again")):
        p = cmd(name, handler, text)
        if name in ("pause", "resume"):
            p.add_argument("batch", metavar="BATCH", nargs="?", help="batch id or name")
            p.add_argument("--all", action="store_true", help=f"{name} every {'queued or running' if name == 'pause' else 'paused'} batch")
        else:
            p.add_argument("batch", metavar="BATCH", help="batch id or name")

    p = cmd("set", knobs.set_command, "change a runtime knob for every worker within a second; without KNOB: list them")
    p.add_argument("name", metavar="KNOB", nargs="?", choices=store_knobs.NAMES,
                   help="; ".join(f"{n}: {h}" for n, h in store_knobs.HELP.items()))
    p.add_argument("value", metavar="VALUE", nargs="?", help="a number, or 'default' (also 'none') to clear it")
    p.add_argument("--json", action="store_true", help="list the knobs as one JSON object")

    p = cmd("proxies", manage.proxies_list_command, "manage the proxy pool")
    psub = p.add_subparsers(title="proxy commands", metavar="ACTION")

    def pcmd(name: str, handler, help: str) -> argparse.ArgumentParser:
        pp = psub.add_parser(name, help=help, description=help)
        _common(pp)
        pp.set_defaults(handler=handler)
        return pp

    pp = pcmd("add", manage.proxies_add_command, "add proxies from a file")
    pp.add_argument("file", metavar="FILE")
    pp.add_argument("--skip-invalid", action="store_true")
    pp = pcmd("list", manage.proxies_list_command, "list proxies and their health")
    pp.add_argument("--json", action="store_true")
    pcmd("check", manage.proxies_check_command, "validate every proxy against the source's health URL now")
    for name, handler, text in (("disable", manage.proxies_disable_command, "stop using a proxy"),
                                ("enable", manage.proxies_enable_command, "use a disabled proxy again"),
                                ("remove", manage.proxies_remove_command, "delete a proxy from the pool")):
        pp = pcmd(name, handler, text)
        pp.add_argument("proxy", metavar="PROXY", help="proxy id or label (see: storycheck proxies list)")

    p = cmd("export", manage.export_command, "export a batch's results")
    p.add_argument("batch", metavar="BATCH", help="batch id or name")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    p.add_argument("--stories", action="store_true",
                   help="one row per story found (username, story id, times) instead of one per profile")

    p = cmd("logs", manage.logs_command, "show the batch log")
    p.add_argument("--batch", metavar="B", help="only this batch (id or name)")
    p.add_argument("--level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    p.add_argument("--limit", type=int, default=200, help="newest N records (default 200; 0 = all)")
    p.add_argument("--json", action="store_true")

    p = cmd("source", source_test.source_usage_command, "try the story source of a config")
    ssub = p.add_subparsers(title="source commands", metavar="ACTION")
    sp = ssub.add_parser("test", help="send one request for USERNAME and explain the answer",
                         description="send one request for USERNAME and explain the answer")
    _common(sp)
    sp.set_defaults(handler=source_test.source_test_command)
    sp.add_argument("username", metavar="USERNAME")
    sp.add_argument("--proxy", metavar="P", help="send it through this proxy (host:port[:user:pass] or a URL)")

    from storycheck_tui.cli import watch

    watch.register(sub, cmd, _common)

    p = cmd("sim", run.sim_command, "run the story API simulator with proxy ports on 127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--proxies", type=int, default=8, metavar="N")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profiles", metavar="FILE", help="only these usernames exist")
    p.add_argument("--rate", type=float, default=5.0, help="allowed requests/s per proxy identity")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of 5xx answers")
    p.add_argument("--host", default="127.0.0.1")

    p = cmd("demo", console.demo_command, "the simulator, demo proxies and ~500 profiles, in the console")
    p.add_argument("--headless", action="store_true", help="no console: run the demo batch and print a summary")
    p.add_argument("--profiles", type=int, default=500, metavar="N", help="demo batch size (default 500)")
    return parser
