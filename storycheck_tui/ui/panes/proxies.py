"""Proxy health: label (never the URL), state in colour, successes/failures, latency and its
recent trend, cooldown remaining, last error; the selected proxy."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from rich.text import Text

from storycheck_tui.engine.proxystate import LATENCY_HISTORY, ProxyView, is_usable
from storycheck_tui.states import ProxyState
from storycheck_tui.store.reads import ProxyRow
from storycheck_tui.ui import format as fmt
from storycheck_tui.ui.columns import Col, columns, fit, room
from storycheck_tui.ui.panes.base import Line, Pane
from storycheck_tui.ui.table import Table

COLS = columns(Col("label", "Proxy", 16), Col("state", "State", 12), Col("ok", "OK", 7, right=True),
               Col("fail", "Fail", 6, right=True), Col("latency", "ms", 6, right=True), Col("trend", "Trend", 7),
               Col("error", "Last error", 60))

@dataclass(frozen=True)
class ProxyLine:
    key: str
    label: str
    state: str
    successes: int
    failures: int
    last_latency_ms: float | None
    latencies: tuple[float, ...]
    cooldown_until: float | None  # wall clock
    last_error: str | None
    validating: bool = False

    def usable(self, now: float) -> bool:
        return is_usable(self.state, self.cooldown_until, now, self.validating)


class LatencyHistory:
    """Latency samples of proxies whose checks run in other processes (the database keeps
    only the last one): a new sample whenever a proxy's request count moves."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}
        self._values: dict[int, deque[float]] = {}

    def observe(self, rows: list[ProxyRow]) -> None:
        for r in rows:
            n = r.successes + r.failures
            if self._seen.get(r.id) != n and r.last_latency_ms is not None:
                self._values.setdefault(r.id, deque(maxlen=LATENCY_HISTORY)).append(r.last_latency_ms)
            self._seen[r.id] = n

    def seed(self, proxy_id: int, values: list[float], count: int) -> None:
        """Known history (snapshots and screenshots); ``count`` = successes + failures now."""
        self._values[proxy_id] = deque(values, maxlen=LATENCY_HISTORY)
        self._seen[proxy_id] = count

    def of(self, proxy_id: int) -> tuple[float, ...]:
        return tuple(self._values.get(proxy_id, ()))


def merge(views: tuple[ProxyView, ...], rows: list[ProxyRow] | None, *, watch_only: bool,
          history: LatencyHistory) -> list[ProxyLine]:
    """One line per proxy.

    A console that runs checks shows its own pool (fresh state, the latency trend) with
    the all-time counts from the database; a watch-only console shows the database rows,
    which the workers update about once a second.
    """
    by_id = {str(r.id): r for r in rows or ()}
    if watch_only and rows is not None:
        return [ProxyLine(str(r.id), r.label, ProxyState.DISABLED if r.disabled else r.state, r.successes, r.failures,
                          r.last_latency_ms, history.of(r.id),
                          r.cooldown_until if r.state == ProxyState.COOLING else None, r.last_error) for r in rows]
    out = []
    for v in views:
        r = by_id.get(v.key)
        ok, bad = (max(r.successes, v.successes), max(r.failures, v.failures)) if r else (v.successes, v.failures)
        label = "direct (no proxy)" if v.key == "direct" else v.label
        out.append(ProxyLine(v.key, label, v.state, ok, bad, v.last_latency_ms, v.latencies, v.cooldown_until,
                             v.last_error, v.validating))
    return out


def sort_value(p: ProxyLine, key: str) -> object:
    """What a proxy sorts by in a column (None: no value, sorted last)."""
    return {"label": p.label.lower(), "state": p.state, "ok": p.successes, "fail": p.failures,
            "latency": p.last_latency_ms, "trend": p.latencies[-1] if p.latencies else None,
            "error": p.last_error or None}.get(key)


class ProxiesTable(Table):
    pass


def proxy_cells(p: ProxyLine, now: float) -> tuple:
    cooldown = None
    if p.state == ProxyState.COOLING and p.cooldown_until is not None:
        cooldown = max(0, int(p.cooldown_until - now + 0.999))
    return (p.label, (p.state, p.validating, cooldown), p.successes, p.failures,
            None if p.last_latency_ms is None else round(p.last_latency_ms), p.latencies[-5:],
            p.last_error if p.state != ProxyState.HEALTHY else None)


def keep_port(label: str, width: int) -> str:
    """``label`` in ``width`` cells, the host cut rather than the port:
    ``de-fra-01.proxy.example:8080`` -> ``de-fra-01.p…:8080`` (the port tells proxies on
    one host apart)."""
    if len(label) <= width:
        return label
    host, sep, port = label.rpartition(":")
    if not sep or not port.isdigit() or len(port) + 3 > width:
        return label
    return host[: width - len(port) - 2] + "…:" + port


def short_label(label: str) -> str:
    """The label without its scheme (``socks5://host:port`` -> ``host:port``): the table is narrow;
    the line under it shows the whole label of the selected proxy."""
    head, sep, rest = label.partition("://")
    return rest if sep and head.isalnum() and rest else label


def render_proxy(cells: tuple) -> list[Text]:
    label, (state, validating, cooldown), ok, bad, latency, trend, error = cells
    shown = "rejected" if state == ProxyState.AUTH_REJECTED else state  # auth_rejected: 13 cells, the column has 11
    state_label = shown + (f" {fmt.duration(cooldown)}" if cooldown else "") + ("…" if validating else "")
    out = [fmt.plain(keep_port(short_label(label), room(COLS[0]))), fmt.state(state, state_label),
           Text(fmt.count(ok), style="green" if ok else "bright_black"),
           Text(fmt.count(bad), style="red" if bad else "bright_black"),
           Text("—" if latency is None else (f"{latency}" if latency < 10_000 else f"{latency / 1000:.0f}s"),
                style="yellow" if latency and latency >= 1000 else ""),
           Text(fmt.sparkline(trend, 5), style="cyan"),
           fmt.plain(error or "", "red" if state in (ProxyState.DEAD, ProxyState.COOLING, ProxyState.AUTH_REJECTED)
                      else "bright_black")]
    return [fit(c, t) for c, t in zip(COLS, out)]


class ProxiesPane(Pane):
    pane_name = "proxies"
    number = 3
    pane_title = "Proxies"
    filter_placeholder = "label or state"
    filter_id = "proxies-filter"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._lines: dict[str, ProxyLine] = {}
        self._all: list[ProxyLine] = []
        self.selected_key: str | None = None
        self.needle = ""
        self.now = 0.0

    def compose(self):
        table = ProxiesTable(id="proxies-table", cursor_type="row")
        table.set_columns(COLS)
        yield table
        yield Line("", id="proxies-detail", classes="detail-line")

    def target(self) -> ProxiesTable:
        return self.query_one(ProxiesTable)

    @property
    def selected(self) -> ProxyLine | None:
        return self._lines.get(self.selected_key) if self.selected_key else None

    @property
    def proxies(self) -> list[ProxyLine]:
        """Every proxy as last shown, the filtered-out ones too."""
        return list(self._all)

    @property
    def shown(self) -> list[ProxyLine]:
        """The proxies the table shows: those the filter lets through (the table sorts them)."""
        return list(self._lines.values())

    def apply_filter(self, text: str) -> None:
        self.needle = text.strip().lower()
        self.update_proxies(self._all, self.now)

    def resort(self) -> None:
        self.update_proxies(self._all, self.now)

    def update_proxies(self, lines: list[ProxyLine], now: float) -> None:
        self._all = lines
        self.now = now
        usable = sum(1 for p in lines if p.usable(now))
        if self.needle:
            lines = [p for p in lines if self.needle in p.label.lower() or self.needle == p.state]
        self._lines = {p.key: p for p in lines}
        table = self.target()
        table.sync(((p.key, proxy_cells(p, now)) for p in table.ordered(lines, sort_value)), render_proxy)
        if self.selected_key not in self._lines and lines:
            self.selected_key = lines[0].key
        sub = f"{usable}/{len(self._all)} usable"
        if self.needle:
            sub += f" · {len(lines)} matching {fmt.literal(self.needle)!r}"
        self.set_subtitle(Text(sub))
        self._detail()

    def on_table_row_highlighted(self, event: Table.RowHighlighted) -> None:
        event.stop()
        self.selected_key = event.row_key
        self._detail()

    def _detail(self) -> None:
        line = self.query_one("#proxies-detail", Line)
        p = self.selected
        if p is None:
            line.show(Text("no proxies", style="bright_black"))
            return
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append_text(fmt.plain(p.label, "bold"))
        t.append(" ")
        what = {ProxyState.HEALTHY: "in use", ProxyState.UNCHECKED: "not checked yet", ProxyState.COOLING: "cooling down",
                ProxyState.DEAD: "dead: re-checked by the validator",
                ProxyState.DISABLED: "disabled by an operator",
                ProxyState.AUTH_REJECTED: "auth_rejected: refused its credentials; tried again with new ones "
                                          "(proxies add), r re-validates it",
                }.get(p.state, p.state)
        t.append(what, style=fmt.STATE_STYLE.get(p.state, ""))
        if p.state == ProxyState.COOLING and p.cooldown_until is not None:
            left = p.cooldown_until - self.now
            t.append(f", back in {fmt.duration(left)}" if left > 0 else ", usable again", style="yellow")
        if p.last_error and p.state != ProxyState.HEALTHY:
            t.append(" · ", style="bright_black")
            t.append_text(fmt.plain(p.last_error, "red"))
        line.show(t)
