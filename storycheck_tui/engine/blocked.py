"""Why nothing can be sent now, in one line: for the `run` progress line, `batches` and the console.

A pure function of what the engine's parts publish (the pool's views, the claimer's
``waiting_for_proxy``, the circuit breaker's view, the Retry-After wait): it owns no state.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from storycheck_tui.engine.breaker import CLOSED, BreakerView
from storycheck_tui.engine.proxystate import DEAD, ProxyView, STUCK

#: proxies named one by one in a reason; a larger pool is summed up by state
NAMED = 5
#: a Retry-After wait shorter than this is ordinary pacing, not worth a reason
RETRY_AFTER_WORTH_SAYING = 1.0
#: states of a route that only a validation or an operator can make usable again
UNUSABLE = (DEAD, *STUCK)


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


def direct_reason(views: Sequence[ProxyView]) -> str:
    """``cannot send direct: direct STATE (LAST ERROR)`` (a pool without proxies)."""
    shown = "; ".join(f"{v.label} {v.state}" + (f" ({v.last_error})" if v.last_error else "") for v in views)
    return f"cannot send direct (no proxies): {shown}"


def hopeless(views: Sequence[ProxyView]) -> bool:
    """No proxy can come back by itself: each is auth_rejected or disabled (or none is left)."""
    return all(v.state in STUCK for v in views)


def blocked_reason(views: Sequence[ProxyView], *, direct: bool, waiting_for_proxy: bool,
                   circuit: BreakerView | None, retry_after: float) -> str | None:
    """The reason nothing can be sent, or None when checks can go out.

    Without proxies the pool's one route is the direct one: when it cannot be used (cooling
    or dead after failures a ``proxy_blocked`` rule reported, or disabled) it is named too, so
    a `run` without proxies reaches its stall limit with a reason.
    """
    if direct:
        if waiting_for_proxy or any(v.state in UNUSABLE for v in views):
            return direct_reason(views)
    elif waiting_for_proxy or hopeless(views):
        return proxies_reason(views)
    if circuit is not None and circuit.state != CLOSED:
        when = f"next probe in {circuit.next_probe_in:.0f} s" if circuit.next_probe_in is not None else "probing"
        return f"the source's circuit is open, {when} (last error: {circuit.reason})"
    if retry_after >= RETRY_AFTER_WORTH_SAYING:
        return f"waiting for Retry-After: {retry_after:.0f} s left"
    return None


__all__ = ["blocked_reason", "direct_reason", "hopeless", "proxies_reason"]
