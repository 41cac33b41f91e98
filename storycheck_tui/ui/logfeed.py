"""What the log pane shows: this process's records (the log ring) and every process's
records that reached the database (the ``batch_log`` table), each record once.

The ring is drained on every redraw; the table is tailed by id with the other database
reads, about once a second. A record of this process is in both (the engine's writer stores
what has a batch id): it is shown from the ring, at once, and recognised when it comes back
from the table by its text and a time within :data:`MATCH_WINDOW` of its own, each record
standing for one row. Not by the exact time: a result's row is stamped with the database
clock when its transaction began, the record with this process's clock after the commit
(a busy commit takes seconds; a PostgreSQL server's clock is another host's). Records of `storycheck worker` processes and of CLI
commands (pause, cancel, …) come only from the table.

Owned by the UI thread (the app calls it from its redraw and from the answer of a read).
"""

from __future__ import annotations

from collections import deque

from storycheck_tui.logs import LogEntry, LogRing
from storycheck_tui.store.reads import LogLine
from storycheck_tui.ui.panes.logview import gap_entry

#: at most this many log records are taken from the ring per redraw
LOG_CAP_PER_TICK = 5000
#: batch_log rows read per database read (a tail that falls behind reads again at once)
DB_TAIL_LIMIT = 2000
#: batch_log rows a tail starts with (the newest ones; the database keeps the rest: storycheck logs)
DB_TAIL_START = 300
#: how many of this process's records are remembered to recognise them in the table
REMEMBER = 50_000
#: a table row and a record of this process with the same text are one record if their times
#: are at most this far apart (seconds)
MATCH_WINDOW = 60.0


class LogFeed:
    def __init__(self, ring: LogRing) -> None:
        self.ring = ring
        self.ring_seq = 0
        self.db_after: int | None = None  # the last batch_log id shown (None: not started)
        self._mine: deque[tuple[float, str]] = deque()  # (time, text) of the last REMEMBER records
        self._unmatched: dict[str, list[float]] = {}  # text -> times of those not yet seen in the table

    def from_ring(self) -> list[LogEntry]:
        """New records of this process, with a gap line where some were skipped."""
        new = self.ring.since(self.ring_seq)
        if not new:
            return []
        out: list[LogEntry] = []
        if len(new) > LOG_CAP_PER_TICK:
            skipped = len(new) - LOG_CAP_PER_TICK
            new = new[-LOG_CAP_PER_TICK:]
            out.append(gap_entry(skipped, new[0]))
        if self.ring_seq and new[0].seq > self.ring_seq + 1 and not out:
            out.append(gap_entry(new[0].seq - self.ring_seq - 1, new[0]))
        out.extend(new)
        self.ring_seq = new[-1].seq
        mine, unmatched = self._mine, self._unmatched
        for e in new:
            mine.append((e.created, e.message))
            unmatched.setdefault(e.message, []).append(e.created)
        while len(mine) > REMEMBER:
            created, message = mine.popleft()
            times = unmatched.get(message)
            if times and created in times:
                times.remove(created)
                if not times:
                    del unmatched[message]
        return out

    def _is_mine(self, created: float, message: str) -> bool:
        """Whether a table row is a record this process showed (each record matches one row)."""
        times = self._unmatched.get(message)
        if not times:
            return False
        for i, t in enumerate(times):
            if abs(t - created) <= MATCH_WINDOW:
                del times[i]
                if not times:
                    del self._unmatched[message]
                return True
        return False

    def from_db(self, lines: list[LogLine]) -> tuple[list[LogEntry], bool]:
        """The rows of a tail read that this process did not show already, and whether the
        tail may have more (read again now)."""
        if not lines:
            if self.db_after is None:
                self.db_after = 0
            return [], False
        self.db_after = lines[-1].id
        out = [LogEntry(seq=-1, created=ln.created, level=ln.level, logger="storycheck", event=ln.event,
                        message=ln.message, username=ln.username, proxy=ln.proxy, details=ln.details or None,
                        traceback=ln.traceback)
               for ln in lines if not self._is_mine(ln.created, ln.message)]
        return out, len(lines) >= DB_TAIL_LIMIT
