"""Why nothing can be sent now, in one line: for the `run` progress line, `batches` and the console.

A pure function of what the engine's parts publish (the pool's views, the claimer's
``waiting_for_proxy``, the circuit breaker's view, the Retry-After wait): it owns no state.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from storycheck_tui.engine.breaker import CLOSED, BreakerView
from storycheck_tui.engine.proxystate import ProxyView, STUCK

#: proxies named one by one in a reason; a larger pool is summed up by state
NAMED = 5
#: a Retry-After wait shorter than this is ordinary pacing, not worth a reason
RETRY_AFTER_WORTH_SAYING = 1.0


def proxies_reason(views: Sequence[ProxyView]) -> str:
    """``no usable proxy: LABEL STATE (LAST ERROR); ...`` (a large pool: counts by state, a few named)."""
    if not views:
        return "no usable proxy: every proxy was removed from the pool"
    shown = [f"{v.label} {v.state}" + (f" ({v.last_error})" if v.last_error else "") for v in views[:NAMED]]
    if len(views) > NAMED:
        counts = Counter(v.state for v in views)
        by_state = ", ".join(f"{n} {state}" for state, n in counts.most_common())
        return f"no usable proxy: {len(views)} proxies, {by_state}; e.g. " + "; ".join(shown[:3])
    return "no usable proxy: " + "; ".join(shown)


def hopeless(views: Sequence[ProxyView]) -> bool:
    """No proxy can come back by itself: each is auth_rejected or disabled (or none is left)."""
    return all(v.state in STUCK for v in views)


def blocked_reason(views: Sequence[ProxyView], *, direct: bool, waiting_for_proxy: bool,
                   circuit: BreakerView | None, retry_after: float) -> str | None:
    """The reason nothing can be sent, or None when checks can go out."""
    if not direct and (waiting_for_proxy or hopeless(views)):
        return proxies_reason(views)
    if circuit is not None and circuit.state != CLOSED:
        when = f"next probe in {circuit.next_probe_in:.0f} s" if circuit.next_probe_in is not None else "probing"
        return f"the source's circuit is open, {when} (last error: {circuit.reason})"
    if retry_after >= RETRY_AFTER_WORTH_SAYING:
        return f"waiting for Retry-After: {retry_after:.0f} s left"
    return None


__all__ = ["blocked_reason", "hopeless", "proxies_reason"]
