"""A local story API plus virtual proxy ports with fault injection.

A black box for the engine: reached only over HTTP, importing nothing from the rest of
storycheck. One event loop in one background thread serves the API port and every proxy
port. A proxy port does not forward anything: it answers absolute-form requests for the API
in-process, as identity ``proxy-i`` (the API port itself is identity ``direct``), after
applying that port's fault. Each identity has its own token bucket, like a per-IP limit.
Stories change over time on a schedule (``SimConfig.story_every``) or by hand
(``Simulator.post_story``/``expire_stories``, ``POST /_sim/post``/``/_sim/expire``): see
``world.py`` for the model and ``app.py`` for the control calls.
"""

from __future__ import annotations

from .app import FAULT_KINDS, ProxyFault, SimConfig, Simulator

__all__ = ["Simulator", "SimConfig", "ProxyFault", "FAULT_KINDS"]
