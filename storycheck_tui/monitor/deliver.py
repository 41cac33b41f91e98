"""The deliverer: one thread that POSTs due events of the outbox to their watch's webhook.

State: the thread owns its httpx client and nothing else; everything it knows about an
event is in the database (claimed with a lease, see ``store/outbox.py``). A receiver that is
down costs this thread's time only: the check threads never wait for it.
"""

from __future__ import annotations

import logging
import time

import httpx
from peewee import PeeweeException

from storycheck_tui import logs
from storycheck_tui.masking import add_webhook_secrets, mask_webhook, one_line
from storycheck_tui.monitor import signing
from storycheck_tui.monitor.loop import Loop
from storycheck_tui.store import outbox
from storycheck_tui.store.db import Store

WEBHOOK_DELIVERED = "WEBHOOK_DELIVERED"
WEBHOOK_FAILED = "WEBHOOK_FAILED"
log = logging.getLogger(logs.LOGGER_NAME)


class Deliverer(Loop):
    thread_name = "storycheck-deliverer"

    def __init__(self, store: Store, key: bytes | None, *, poll: float = 0.5, timeout: float = 5.0,
                 clock=time.time):
        super().__init__()
        self.store = store
        self.key = key
        self.poll = poll
        self.timeout = timeout
        self.clock = clock
        self._warned = False

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    busy = self.deliver_due(client)
                except PeeweeException as exc:
                    self.store.recover()
                    log.warning("webhook delivery: database error: %s", one_line(str(exc)))
                    busy = False
                if not busy:
                    self._stop.wait(self.poll)

    def deliver_due(self, client: httpx.Client) -> bool:
        """Deliver what is due now; True if there was anything."""
        if self.key is None:
            if not self._warned and outbox.pending_count(self.store):
                self._warned = True
                logs.event(logging.WARNING, WEBHOOK_FAILED, f"events wait for delivery: set {signing.ENV_VAR} "
                           f"(storycheck watch secret prints one) and restart the worker")
            return False
        due = outbox.claim_due(self.store)
        claimed_at = time.monotonic()
        for i, d in enumerate(due):
            # a POST may take the whole timeout: never start one the lease would not cover
            if self._stop.is_set() or time.monotonic() - claimed_at > outbox.DELIVERY_LEASE - self.timeout - 1:
                outbox.release(self.store, [x.event.id for x in due[i:]])
                break
            self._post(client, d)
        return bool(due)

    def _post(self, client: httpx.Client, d: outbox.Delivery) -> None:
        e = d.event
        if not d.url:
            outbox.failed_try(self.store, e.id, "the watch has no webhook (removed or cleared)")
            return
        add_webhook_secrets(d.url)  # its password, path token and query masked in every message
        body = outbox.body(e)
        headers = signing.headers(self.key, str(e.id), int(self.clock()), body)
        error = None
        try:
            with client.stream("POST", d.url, content=body, headers=headers) as r:
                status = r.status_code  # the answer's body is not read: only its status counts
            if 200 <= status < 300:
                outbox.delivered(self.store, e.id)
                log.info("event %s delivered to %s", e.id, mask_webhook(d.url), extra={"event": WEBHOOK_DELIVERED})
                return
            error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        state = outbox.failed_try(self.store, e.id, error)
        level = logging.ERROR if state == "failed" else logging.WARNING
        logs.event(level, WEBHOOK_FAILED, one_line(f"event {e.id} to {mask_webhook(d.url)}: {error}"
                                                   + ("; given up" if state == "failed" else "; will retry")))


__all__ = ["Deliverer", "WEBHOOK_DELIVERED", "WEBHOOK_FAILED"]
