"""Pictures of the console, compared with stored SVGs (pytest-textual-snapshot).

Deterministic: a copy of the fixed sample database, a watch-only runner, the redraw timer
off (one redraw on mount), the clock pinned and times in UTC. Update after an intended
change with ``pytest tests/test_ui_snapshots.py --snapshot-update`` and look at the SVGs.
The README screenshots are made from the same scenes by ``storycheck_tui/ui/screenshots.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storycheck_tui.ui import screenshots
from storycheck_tui.ui.sample import sample_app, sample_copy


@pytest.fixture
def console(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("leads.txt").write_text(screenshots.BAD_FILE, encoding="utf-8")
    store = sample_copy(tmp_path)
    runners = []

    def make(**options):
        app, runner = sample_app(store, **options)
        runners.append(runner)
        return app

    yield make
    for r in runners:
        r.stop(0)
    store.close()


@pytest.mark.parametrize("scene", [s.name for s in screenshots.SCENES])
def test_scene(scene, snap_compare, console):
    s = screenshots.scene(scene)
    assert snap_compare(console(**dict(s.options)), terminal_size=s.size, run_before=s.run_before)
