"""The status bar: batches running/paused, checks per second, ETA, totals, usable proxies,
and what this console is (running checks itself, or watching `storycheck worker`s); a line
below says why nothing can be sent (or that the source's circuit is open, and why), the
source's pace and why it last changed, and the runtime knobs in force; the last, the
console's note."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from storycheck_tui.store import knobs as knob_store
from storycheck_tui.store import reads
from storycheck_tui.store.knobs import Knobs
from storycheck_tui.store.reads import WorkerRow
from storycheck_tui.ui import format as fmt

#: the circuit states from worst to best
_CIRCUITS = reads.CIRCUIT_ORDER


@dataclass(frozen=True)
class EngineStatus:
    """The source as the engines pace it: this console's own (its snapshot) and the live
    `storycheck worker`s (their rows)."""

    pace: float | None = None  # requests/s to the source, summed (None: nothing paces a source)
    pace_reason: str | None = None  # why it last changed
    circuit: str | None = None  # the worst circuit breaker: closed, probing, open
    circuit_reason: str | None = None
    blocked: str | None = None  # why this console's engine (or a worker) can send nothing now
    knobs: tuple[str, ...] = ()  # the runtime knobs in force, as an operator reads them


def engine_status(snap, workers: list[WorkerRow] | None, knobs: Knobs | None, now: float) -> EngineStatus:
    """What the status bar says of the source, from this console's engine snapshot and the
    workers' rows (``None``: not read yet)."""
    others = [w for w in workers or [] if w.id != snap.worker_id]
    facts = reads.source_facts(others, now)
    pace, reason, circuit, why = facts.pace, facts.pace_reason, facts.circuit, facts.circuit_reason
    if snap.threads and snap.pace is not None:
        pace, reason = snap.pace.rate + (pace or 0.0), snap.pace.reason
        if snap.circuit is not None and (circuit is None or _CIRCUITS.index(snap.circuit.state)
                                         <= _CIRCUITS.index(circuit if circuit in _CIRCUITS else "closed")):
            circuit, why = snap.circuit.state, snap.circuit.reason
    blocked = snap.blocked_reason if snap.threads else None
    if blocked is None and facts.blocked:
        blocked = facts.blocked if facts.workers == 1 else f"{facts.blocked_workers} of {facts.workers} workers: {facts.blocked}"
    return EngineStatus(pace, reason, circuit, why, blocked,
                        tuple(knob_store.describe(knobs)) if knobs is not None else ())


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
    engine: EngineStatus = EngineStatus()


class StatusBar(Static):
    def __init__(self, **kw) -> None:
        super().__init__("", markup=False, **kw)
        self.facts: StatusFacts | None = None

    def show(self, facts: StatusFacts) -> None:
        if facts == self.facts:
            return
        lines = _lines(facts)
        layout = self.facts is None or lines != _lines(self.facts)
        self.facts = facts
        if layout:
            # set, not measured (height: auto): a measured height could stay at the old count
            # of lines when the count changed between two layouts of the screen
            self.styles.height = lines
        self.update(render(facts), layout=layout)


def _lines(f: StatusFacts) -> int:
    return 1 + bool(engine_line(f)) + bool(f.note)


def engine_line(f: StatusFacts) -> Text:
    """Why nothing can be sent (or the circuit's failure), the knobs in force, why the pace
    last changed: what there is of them, most urgent first (empty: no line)."""
    e = f.engine
    t = Text()
    dot = (" · ", "bright_black")
    if e.blocked:
        t.append("nothing can be sent: ", style="bold red")
        t.append(fmt.literal(e.blocked), style="red")
    elif e.circuit in ("open", "probing") and e.circuit_reason:
        t.append(f"circuit {e.circuit}: ", style="bold red")
        t.append(fmt.literal(e.circuit_reason), style="red")
    if e.pace is not None:
        if t:
            t.append(*dot)
        t.append("pace ", style="bright_black")
        t.append(f"{e.pace:.1f}/s", style="bold cyan")
    if e.knobs:
        if t:
            t.append(*dot)
        t.append("knobs: ", style="bright_black")
        t.append(", ".join(e.knobs), style="magenta")
    if e.pace is not None and e.pace_reason:
        t.append(*dot)
        t.append("pace changed: ", style="bright_black")
        t.append(fmt.literal(e.pace_reason))
    return t


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
    more = engine_line(f)
    if more:
        t.append("\n")
        t.append_text(more)
    if f.note:
        t.append("\n")
        note = f.note.split(" (")[0] + f.note[f.note.find(")") + 1:] if f.compact and " (" in f.note else f.note
        t.append(note, style="yellow")
    return t
