"""Every key of the console, as a :class:`~textual.binding.Binding` with an id.

The ids are stable: a user keymap (``keymap.toml`` in the storycheck config directory,
or the file named by ``STORYCHECK_KEYMAP``) maps them to other keys::

    [keymap]
    "batch.pause" = "space"
    "app.quit" = "ctrl+q"

The help screen and the command palette are built from these lists, so a binding
cannot be in one and missing from the others.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from textual.binding import Binding

ENV_VAR = "STORYCHECK_KEYMAP"

# --- the main screen (work on the selected batch / proxy, panes) ---------------------------
PAUSE = Binding("p", "pause_batch", "Pause", id="batch.pause", tooltip="Pause or resume the selected batch")
PAUSE_ALL = Binding("P", "pause_all", "Pause all", id="batch.pause_all", key_display="P", show=False,
                    tooltip="Pause every running or queued batch; again: resume every paused one")
CANCEL = Binding("c", "cancel_batch", "Cancel", id="batch.cancel", tooltip="Cancel the selected batch (asks first)")
RETRY_FAILED = Binding("f", "retry_failed", "Retry failed", id="batch.retry_failed",
                       tooltip="Queue the selected batch's failed checks again")
NEW_BATCH = Binding("n", "new_batch", "New", id="batch.new", tooltip="New batch from a file of usernames")
EXPORT = Binding("e", "export_batch", "Export", id="batch.export", tooltip="Export the selected batch (CSV or JSONL)")
TOGGLE_PROXY = Binding("d", "toggle_proxy", "Proxy on/off", id="proxy.toggle",
                       tooltip="Disable the selected proxy, or enable it again")
RETRY_PROXY = Binding("r", "retry_proxy", "Recheck", id="proxy.retry",
                      tooltip="Re-validate the selected proxy now")
REVALIDATE_ALL = Binding("R", "revalidate_all", "Recheck all", id="proxy.revalidate_all", show=False,
                         tooltip="Re-validate every proxy now", key_display="R")
CHARTS = Binding("g", "charts", "Charts", id="app.charts",
                 tooltip="Live charts: the selected batch's checks/s by outcome, failures, 429s, pace, each worker")
WATCHES = Binding("w", "watches", "Watches", id="app.watches",
                  tooltip="Watchlists: interval, next round, last round's summary and its new stories")
KNOBS = Binding("K", "knobs", "Knobs", id="app.knobs", key_display="K", show=False,
                tooltip="Runtime knobs for every worker: the source pace cap, check threads per worker")
FILTER = Binding("slash", "filter", "Filter", id="pane.filter", tooltip="Filter the focused pane", key_display="/")
QUIT = Binding("q", "quit_app", "Quit", id="app.quit", tooltip="Quit (asks while checks run)")

_PANES = Binding.Group("Panes", compact=True)
# the pane numbers are in the pane titles ("1 Batches"), so the footer leaves them out
FOCUS_BATCHES = Binding("1", "focus_pane('batches')", "Batches", id="pane.batches", group=_PANES, show=False)
FOCUS_RESULTS = Binding("2", "focus_pane('results')", "Results", id="pane.results", group=_PANES, show=False)
FOCUS_PROXIES = Binding("3", "focus_pane('proxies')", "Proxies", id="pane.proxies", group=_PANES, show=False)
FOCUS_LOG = Binding("4", "focus_pane('log')", "Log", id="pane.log", group=_PANES, show=False)
FOCUS_WORKERS = Binding("5", "focus_pane('workers')", "Workers", id="pane.workers", show=False)
NEXT_PANE = Binding("tab", "focus_next", "Next pane", id="pane.next", show=False)
PREV_PANE = Binding("shift+tab", "focus_previous", "Previous pane", id="pane.previous", show=False)
MAXIMIZE = Binding("z", "toggle_maximize", "Zoom", id="pane.zoom", show=False,
                   tooltip="Give the focused pane the whole screen, or give it back")

HELP = Binding("question_mark,f1", "help", "Help", id="app.help", key_display="?",
               tooltip="This list of keys")

# quit stays second, so an 80-column footer still shows it
MAIN = [HELP, QUIT, PAUSE, PAUSE_ALL, CANCEL, RETRY_FAILED, NEW_BATCH, EXPORT, TOGGLE_PROXY, RETRY_PROXY, REVALIDATE_ALL, CHARTS,
        WATCHES, KNOBS, FILTER,
        FOCUS_BATCHES, FOCUS_RESULTS, FOCUS_PROXIES, FOCUS_LOG, FOCUS_WORKERS, NEXT_PANE, PREV_PANE, MAXIMIZE]

#: keys that change something (batches, proxies): a read-only console leaves them out of the
#: footer and the palette, and pressing one says why. (Export writes a file, not the database.)
STEERING = [PAUSE, PAUSE_ALL, CANCEL, RETRY_FAILED, NEW_BATCH, TOGGLE_PROXY, RETRY_PROXY, REVALIDATE_ALL, KNOBS]
STEERING_ACTIONS = {b.action for b in STEERING}

# --- the app (every screen) ---------------------------------------------------------------------
APP = [HELP]

# --- results pane -------------------------------------------------------------------------------
DETAIL = Binding("enter", "select_cursor", "Detail", id="results.detail",
                 tooltip="Attempt history, error, traceback and log lines of the selected profile")
NEXT_PAGE = Binding("right_square_bracket", "next_page", "Older", id="results.next_page", key_display="]",
                    tooltip="The next page of results (older ones); the view holds still until F")
PREV_PAGE = Binding("left_square_bracket", "prev_page", "Newer", id="results.prev_page", key_display="[",
                    tooltip="The previous page of results (newer ones)")
FOLLOW_RESULTS = Binding("F", "toggle_follow", "Follow", id="results.follow", key_display="F",
                         tooltip="Follow the newest results (page 1, refreshed live)")
RESULTS = [DETAIL, PREV_PAGE, NEXT_PAGE, FOLLOW_RESULTS]

# --- every table ---------------------------------------------------------------------------
SORT = Binding("s", "sort_next", "Sort", id="table.sort",
               tooltip="Sort the focused table by its next column (then back to its own order); or click a header")
SORT_REVERSE = Binding("S", "sort_reverse", "Reverse", id="table.sort_reverse", key_display="S", show=False,
                       tooltip="Reverse the focused table's sort")
TABLE = [SORT, SORT_REVERSE]

# --- log pane ---------------------------------------------------------------------------------
LEVEL = Binding("l", "cycle_level", "Level", id="log.level", tooltip="Show DEBUG+, INFO+, WARNING+ or ERROR+")
FOLLOW_LOG = Binding("F", "toggle_follow", "Follow", id="log.follow", key_display="F",
                     tooltip="Keep the newest line in view")
LOG = [LEVEL, FOLLOW_LOG]

# --- modals -------------------------------------------------------------------------------------
#: ctrl+y, never a letter: a letter typed into a filter box that has closed must not confirm anything
CONFIRM_YES = Binding("ctrl+y", "confirm", "Yes", id="confirm.yes", key_display="ctrl+y")
CONFIRM_NO = Binding("n,escape", "cancel", "No", id="confirm.no", key_display="n")
CLOSE = Binding("escape", "close", "Close", id="modal.close")
SUBMIT = Binding("ctrl+s", "submit", "Create", id="modal.submit")

#: (section, bindings) for the help screen and the command palette
SECTIONS: list[tuple[str, list[Binding]]] = [
    ("Batches", [PAUSE, PAUSE_ALL, CANCEL, RETRY_FAILED, NEW_BATCH, EXPORT]),
    ("Proxies", [TOGGLE_PROXY, RETRY_PROXY, REVALIDATE_ALL]),
    ("Results", RESULTS),
    ("Tables", TABLE),
    ("Log", LOG),
    ("Panes", [FILTER, FOCUS_BATCHES, FOCUS_RESULTS, FOCUS_PROXIES, FOCUS_LOG, FOCUS_WORKERS, NEXT_PANE, PREV_PANE,
               MAXIMIZE]),
    ("App", [CHARTS, WATCHES, KNOBS, HELP, QUIT]),
]


#: where a key's action runs (the command palette runs it there): the scope of its list
SCOPE_MAIN, SCOPE_RESULTS, SCOPE_LOG, SCOPE_APP, SCOPE_TABLE = "main", "results", "log", "app", "table"
_SCOPES = ((RESULTS, SCOPE_RESULTS), (LOG, SCOPE_LOG), (APP, SCOPE_APP), (TABLE, SCOPE_TABLE))


def scope(binding: Binding) -> str:
    return next((name for bindings, name in _SCOPES if binding in bindings), SCOPE_MAIN)


def all_bindings() -> list[Binding]:
    return [b for _, group in SECTIONS for b in group]


def default_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("storycheck", appauthor=False)) / "keymap.toml"


def load_user_keymap(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, str], str | None]:
    """The user's keymap (binding id -> keys) and a one-line problem, if any.

    A missing default file is no problem; a bad file is reported and ignored (the console
    still opens with the default keys).
    """
    explicit = path or os.environ.get(ENV_VAR)
    p = Path(explicit) if explicit else default_path()
    if not p.exists():
        return {}, (f"{p}: keymap file not found" if explicit else None)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {}, f"{p}: keymap ignored: {exc}"
    text = p.read_text(encoding="utf-8")
    table = data.get("keymap", data)
    known = {b.id for b in all_bindings()} | {CONFIRM_YES.id, CONFIRM_NO.id, CLOSE.id, SUBMIT.id}
    out: dict[str, str] = {}
    problems: list[str] = []
    for key, value in table.items():
        if key not in known:
            problems.append(f"{p}:{_line_of(text, key)}: unknown binding id {key!r}")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{p}:{_line_of(text, key)}: {key}: keys must be a non-empty string")
        else:
            out[key] = value.strip()
    for key, other, shared in conflicts(out):
        problems.append(f"{p}:{_line_of(text, key)}: {key!r} = {out[key]!r} ignored: {shared!r} is already the "
                        f"key of {other!r}")
        del out[key]
    return out, ("; ".join(problems) if problems else None)


def _line_of(text: str, binding_id: str) -> int:
    """The line of ``text`` (a keymap file) that sets ``binding_id`` (1 if not found)."""
    for n, line in enumerate(text.splitlines(), 1):
        name = line.split("=", 1)[0].strip().strip("\"'")
        if "=" in line and name == binding_id:
            return n
    return 1


#: bindings that are in force at the same time (the main screen's and one widget's)
_TOGETHER = (MAIN + APP + RESULTS + TABLE, MAIN + APP + LOG, [CONFIRM_YES, CONFIRM_NO], [CLOSE, SUBMIT])


def conflicts(overrides: dict[str, str]) -> list[tuple[str, str, str]]:
    """(id, other id, key) for each override whose key another binding in force at the same
    time already has (the one that would hide it): such an override is refused."""
    out = []
    accepted = dict(overrides)
    for binding_id in list(overrides):
        mine = {k.strip() for k in accepted[binding_id].split(",")}
        for group in _TOGETHER:
            if not any(b.id == binding_id for b in group):
                continue
            for other in group:
                if other.id == binding_id:
                    continue
                theirs = {k.strip() for k in accepted.get(other.id, other.key).split(",")}
                shared = mine & theirs
                if shared:
                    out.append((binding_id, other.id, sorted(shared)[0]))
                    del accepted[binding_id]
                    break
            if binding_id not in accepted:
                break
    return out
