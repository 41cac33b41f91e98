"""The monitor a worker or a console runs: the round scheduler and the deliverer."""

from __future__ import annotations

from storycheck_tui.monitor.deliver import Deliverer
from storycheck_tui.monitor.rounds import RoundScheduler
from storycheck_tui.monitor.signing import secret_from_env
from storycheck_tui.store.db import Store


class Monitor:
    def __init__(self, store: Store, *, rounds_every: float = 1.0, key: bytes | None = None, on_round=None):
        self.rounds = RoundScheduler(store, every=rounds_every, on_round=on_round)
        self.deliverer = Deliverer(store, key if key is not None else secret_from_env())

    def start(self) -> "Monitor":
        self.rounds.start()
        self.deliverer.start()
        return self

    def stop(self) -> None:
        self.rounds.stop()
        self.deliverer.stop()


__all__ = ["Monitor"]
