"""The one place a SourceSettings becomes a StorySource; the simulator's settings.

``kind = "sim"`` is the http source with the ``sim`` preset (``sources/preset_data/sim.toml``)
filled in; its ``url`` is the simulator's base URL (``http://127.0.0.1:PORT``), not a template.
Presets in a config file (``preset = "NAME"``) are applied when the file is read
(:mod:`storycheck_tui.sources.source_table`).
"""

from __future__ import annotations

import dataclasses
import os

from storycheck_tui.config import SourceSettings
from storycheck_tui.errors import InputError
from storycheck_tui.masking import register_secret
from storycheck_tui.sources.http import HttpSource
from storycheck_tui.sources.preset_files import apply_preset

#: the header the simulator reads an API key from (same name as the documented example)
SIM_KEY_HEADER = "x-access-key"


def sim_settings(api_url: str, api_key_env: str | None = None) -> SourceSettings:
    """The ``[source]`` settings that talk to the simulator's story API at ``api_url``.

    ``api_key_env`` names an environment variable holding the key to send as ``x-access-key``.
    """
    base = api_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise InputError(f"[source] url: the simulator's base URL must start with http://, got {api_url!r}")
    headers: dict[str, str] = {}
    if api_key_env:
        if api_key_env not in os.environ:
            raise InputError(f"environment variable {api_key_env} is not set")
        key = os.environ[api_key_env]
        register_secret(key)
        headers[SIM_KEY_HEADER] = key
    table, _rules = apply_preset("sim", {"url": base})
    fields = {f.name for f in dataclasses.fields(SourceSettings)}
    return SourceSettings(kind="sim", preset="sim", headers=headers,
                          **{k: v for k, v in table.items() if k in fields and k != "headers"})


def build_source(settings: SourceSettings) -> HttpSource:
    """An :class:`HttpSource` for ``settings``; for ``kind = "sim"`` the preset fills the fields.

    A sim ``url`` that already holds ``{username}`` is taken as a full http configuration.
    ``timeout``, ``max_body_bytes``, the status lists and extra headers are kept from
    ``settings`` in both cases.
    """
    if settings.kind == "sim":
        if not settings.url:
            raise InputError("[source] url: kind = \"sim\" needs url = the simulator's base URL")
        if "{username}" not in settings.url:
            preset = sim_settings(settings.url)
            settings = dataclasses.replace(
                preset,
                headers={**preset.headers, **settings.headers},
                not_found=settings.not_found,
                private=settings.private,
                rate_limited=settings.rate_limited,
                auth_failed=settings.auth_failed,
                timeout=settings.timeout,
                max_body_bytes=settings.max_body_bytes,
                method=settings.method,
                json=settings.json,
                rules=settings.rules,
            )
    elif settings.kind != "http":
        raise InputError(f"[source] kind: expected \"http\" or \"sim\", got {settings.kind!r}")
    return HttpSource(settings)
