"""Open the Textual console (no command), or the demo in it."""

from __future__ import annotations

from argparse import Namespace


def console_command(args: Namespace) -> int:
    from storycheck_tui.ui.launch import launch_console

    return launch_console(args)


def demo_command(args: Namespace) -> int:
    if args.headless:
        from storycheck_tui.cli.run import demo_headless

        return demo_headless(args)
    from storycheck_tui.ui.launch import launch_demo

    return launch_demo(args)
