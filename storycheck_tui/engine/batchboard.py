"""The batches this process knows of and their states, as the database last said.

Owner: the keeper thread. It alone re-reads the batch table (:meth:`BatchBoard.refresh`) and
publishes the result as a new immutable mapping; every other thread only reads the published
``states``/``views``. A thread that changed a batch in the database (an operator command, a
check that met an auth failure, the writer that finished a batch) calls :meth:`request`: the
keeper re-reads at once, and ``request(wait=True)`` returns when it has.
"""

from __future__ import annotations

import threading
from types import MappingProxyType
from typing import Callable, Mapping

from storycheck_tui.states import CLAIMABLE
from storycheck_tui.store import batches as batch_ops
from storycheck_tui.store.batches import BatchView
from storycheck_tui.store.db import Store

#: how long a command waits for the keeper to re-read before it reads itself
REQUEST_TIMEOUT = 5.0


class BatchBoard:
    def __init__(self, store: Store, on_claimable: Callable[[], None]) -> None:
        self._store = store
        self._on_claimable = on_claimable  # wakes the claimer when a batch becomes claimable
        self.states: Mapping[int, str] = MappingProxyType({})
        self.views: tuple[BatchView, ...] = ()
        self.wake = threading.Event()  # the keeper waits on it between rounds
        self._cond = threading.Condition()
        self._asked = 0  # requests made (under _cond)
        self._done = 0  # the last request a refresh has answered (under _cond)
        self._owner: threading.Thread | None = None

    def own(self, thread: threading.Thread) -> None:
        """Name the thread that refreshes from now on (the keeper)."""
        self._owner = thread

    def refresh(self) -> None:
        """Re-read every batch and publish the new states (the owner only, or before it runs)."""
        with self._cond:
            ticket = self._asked
        views = tuple(batch_ops.list_batches(self._store))
        states = {v.id: v.state for v in views}
        old = self.states
        woke = any(s in CLAIMABLE and old.get(b) not in CLAIMABLE for b, s in states.items())
        self.views = views
        self.states = MappingProxyType(states)
        with self._cond:
            self._done = max(self._done, ticket)
            self._cond.notify_all()
        if woke:
            self._on_claimable()

    def request(self, *, wait: bool = False) -> None:
        """Ask the owner to re-read now; with ``wait``, return once a re-read after this call is
        published (re-read here if the owner is not running)."""
        with self._cond:
            self._asked += 1
            ticket = self._asked
        self.wake.set()
        if not wait:
            return
        owner = self._owner
        if owner is None or not owner.is_alive() or owner is threading.current_thread():
            self.refresh()
            return
        with self._cond:
            if not self._cond.wait_for(lambda: self._done >= ticket, REQUEST_TIMEOUT):
                pass  # the keeper is stuck on the database: the views catch up on its next round

    def claimable(self, only: list[int] | None) -> list[int]:
        ids = [b for b, s in self.states.items() if s in CLAIMABLE]
        if only is not None:
            ids = [b for b in ids if b in only]
        return ids
