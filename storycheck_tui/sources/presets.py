"""Source presets, and the one place a SourceSettings becomes a StorySource.

``kind = "sim"`` is the http source with the simulator's field names filled in; its ``url`` is
the simulator's base URL (``http://127.0.0.1:PORT``), not a template.
"""

from __future__ import annotations

import dataclasses
import os

from storycheck_tui.config import SourceSettings
from storycheck_tui.errors import InputError
from storycheck_tui.masking import register_secret
from storycheck_tui.sources.http import HttpSource

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
    return SourceSettings(
        kind="sim",
        url=f"{base}/v1/stories?username={{username}}",
        headers=headers,
        items="items",
        story_id="pk",
        taken_at="taken_at",
        expires_at="expiring_at",
        media_type="media_type",
        health_url=f"{base}/health",
    )


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
            )
    elif settings.kind != "http":
        raise InputError(f"[source] kind: expected \"http\" or \"sim\", got {settings.kind!r}")
    return HttpSource(settings)
