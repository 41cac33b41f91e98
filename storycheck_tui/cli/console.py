"""Open the Textual console (no command), or the demo in it."""

from __future__ import annotations

from argparse import Namespace


def console_command(args: Namespace) -> int:
    from storycheck_tui.ui.launch import launch_console

    return launch_console(args)


def demo_command(args: Namespace) -> int:
    """The demo logs to a directory of its own under the temporary directory (kept after it
    ends, so its log can be read), never to the user's log file."""
    import tempfile

    args.log_dir = tempfile.mkdtemp(prefix="storycheck-demo-")
    if args.headless:
        from storycheck_tui.cli.run import demo_headless

        return demo_headless(args)
    from storycheck_tui.ui.launch import launch_demo

    return launch_demo(args)
