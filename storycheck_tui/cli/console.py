"""Open the Textual console (no command), or the demo in it."""

from __future__ import annotations

from argparse import Namespace

from storycheck_tui.cli.common import import_proxies, settings_from, start_logging


def console_command(args: Namespace) -> int:
    from storycheck_tui.ui.launch import launch_console, read_only_wanted

    settings = settings_from(args)
    read_only = read_only_wanted(args)
    if read_only and getattr(args, "proxies", None):
        from storycheck_tui.errors import InputError

        raise InputError("--proxies adds proxies, and a read-only console changes nothing: leave one out")
    log = start_logging(args, console=True)

    def prepare(store) -> None:
        import_proxies(store, getattr(args, "proxies", None))

    return launch_console(settings, log, db=getattr(args, "db", None), prepare=prepare, read_only=read_only)


def demo_command(args: Namespace) -> int:
    """The demo logs to a directory of its own under the temporary directory (kept after it
    ends, so its log can be read), never to the user's log file."""
    import tempfile

    args.log_dir = tempfile.mkdtemp(prefix="storycheck-demo-")
    if args.headless:
        from storycheck_tui.cli.run import demo_headless

        return demo_headless(args)
    from storycheck_tui.ui.launch import launch_demo

    return launch_demo(start_logging(args, console=True), db=getattr(args, "db", None),
                       profiles=getattr(args, "profiles", 500) or 500)
