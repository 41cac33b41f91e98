from storycheck_tui.cli import entry

entry()
