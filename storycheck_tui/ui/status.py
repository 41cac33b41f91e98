"""The status bar: batches running/paused, checks per second, ETA, totals, usable proxies,
and what this console is (running checks itself, or watching `storycheck worker`s)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from storycheck_tui.ui import format as fmt


@dataclass(frozen=True)
class StatusFacts:
    running: int = 0
    paused: int = 0
    queued: int = 0
    rate: float = 0.0
    remaining: int = 0
    succeeded: int = 0
    failed: int = 0
    usable: int = 0
    proxies: int = 0
    direct: bool = False
    threads: int = 0
    in_flight: int = 0
    workers: int = 0  # worker processes running elsewhere
    waiting_for_proxy: bool = False
    note: str | None = None  # e.g. watch-only
    stopping: str | None = None
    compact: bool = False  # a terminal under 100 cells: shorter words


class StatusBar(Static):
    def __init__(self, **kw) -> None:
        super().__init__("", markup=False, **kw)
        self.facts: StatusFacts | None = None

    def show(self, facts: StatusFacts) -> None:
        if facts == self.facts:
            return
        lines = 1 + bool(facts.note)
        layout = self.facts is None or lines != 1 + bool(self.facts.note)  # height: auto, 1 or 2 lines
        self.facts = facts
        self.update(render(facts), layout=layout)


def render(f: StatusFacts) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    sep = (" │ ", "bright_black")
    if f.stopping:
        t.append(f" {f.stopping} ", style="bold black on yellow")
        t.append(*sep)
    t.append(f"{f.running} run" if f.compact else f"{f.running} running",
             style="bold green" if f.running else "bright_black")
    if f.paused:
        t.append(" · ", style="bright_black")
        t.append(f"{f.paused} paused", style="bold yellow")
    if f.queued and not f.compact:
        t.append(" · ", style="bright_black")
        t.append(f"{f.queued} queued", style="")
    t.append(*sep)
    t.append(f"{f.rate:.1f}", style="bold cyan")
    t.append("/s" if f.compact else " checks/s")
    t.append(*sep)
    t.append("ETA ", style="bright_black")
    t.append(fmt.eta(f.remaining, f.rate) if f.running else "—", style="bold")
    t.append(*sep)
    t.append("ok ", style="bright_black")
    t.append(fmt.count(f.succeeded), style="green")
    t.append(" fail " if f.compact else " failed ", style="bright_black")
    t.append(fmt.count(f.failed), style="bold red" if f.failed else "bright_black")
    t.append(*sep)
    if f.direct:
        t.append("no proxies: direct", style="yellow")
    else:
        style = "bold red" if f.usable == 0 else ("yellow" if f.usable < f.proxies else "green")
        t.append(f"{f.usable}/{f.proxies}", style=style)
        t.append(" proxies" if f.compact else " proxies usable")
    if f.waiting_for_proxy:
        t.append(" (waiting for one)", style="bold red")
    if f.compact:
        pass  # the workers pane (5) has them
    elif f.threads:
        t.append(*sep)
        # claimed jobs wait in this process's queue; at most one per thread is being checked
        checking = min(f.in_flight, f.threads)
        t.append(f"{checking} checking", style="bold" if checking else "")
        if f.in_flight > checking:
            t.append(f" +{f.in_flight - checking} claimed", style="bright_black")
        if f.workers:
            t.append(f" +{f.workers} worker{'s' if f.workers != 1 else ''}", style="cyan")
    else:
        t.append(*sep)
        t.append(f"{f.workers} worker{'s' if f.workers != 1 else ''}", style="cyan")
    if f.note:
        t.append("\n")
        note = f.note.split(" (")[0] + f.note[f.note.find(")") + 1:] if f.compact and " (" in f.note else f.note
        t.append(note, style="yellow")
    return t
