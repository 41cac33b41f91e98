"""Source presets as data: ``preset = "NAME"`` fills the ``[source]`` keys a config leaves out.

Each preset is a TOML file in ``sources/preset_data/`` with a ``[source]`` table (and
``[[source.rules]]``), shipped with the package. ``{base}`` in its ``url`` and ``health_url``
stands for the service's base URL: the preset's own ``base``, or the config's ``url`` when
that is a base URL (no ``{username}``), or the origin of the config's full ``url``.

Merging: a key set in the config wins; ``headers`` merge name by name; the config's rules
are checked before the preset's.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

__all__ = ["PresetError", "preset_names", "load_preset", "apply_preset"]


class PresetError(ValueError):
    """A preset that cannot be applied; ``key`` is the config key to point at."""

    def __init__(self, reason: str, key: str) -> None:
        super().__init__(reason)
        self.key = key


def _folder() -> Any:
    return resources.files("storycheck_tui.sources").joinpath("preset_data")


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in _folder().iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The raw ``[source]`` table of preset ``name`` (``base`` included, ``{base}`` not replaced)."""
    if name not in preset_names():
        raise PresetError(f"unknown preset {name!r} (known: {', '.join(preset_names())})", "preset")
    data = tomllib.loads(_folder().joinpath(f"{name}.toml").read_text(encoding="utf-8"))
    return dict(data["source"])


def _base(preset: dict[str, Any], user_url: Any, name: str) -> str:
    if isinstance(user_url, str) and user_url:
        if "{username}" not in user_url:
            return user_url.rstrip("/")
        parts = urlsplit(user_url)
        return f"{parts.scheme}://{parts.netloc}"
    base = preset.get("base")
    if not base:
        raise PresetError(f"preset {name!r} needs url = the service's base URL (e.g. \"http://127.0.0.1:8000\")",
                          "preset")
    return str(base)


def apply_preset(name: str, table: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``table`` (the config's ``[source]``) over preset ``name``: the merged table, and the preset's rules.

    The merged table keeps the config's own ``rules`` (if any); the preset's come back apart,
    to be checked after them.
    """
    preset = load_preset(name)
    base = _base(preset, table.get("url"), name)
    merged: dict[str, Any] = {k: v for k, v in preset.items() if k not in ("base", "rules")}
    for key in ("url", "health_url"):
        if isinstance(merged.get(key), str):
            merged[key] = merged[key].replace("{base}", base)
    user = dict(table)
    if isinstance(user.get("url"), str) and "{username}" not in user["url"]:
        user.pop("url")  # a base URL: the preset's template, on that base
    if isinstance(user.get("headers"), dict) and isinstance(merged.get("headers"), dict):
        user["headers"] = {**merged["headers"], **user["headers"]}
    merged.update(user)
    return merged, list(preset.get("rules", []))
