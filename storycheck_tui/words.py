"""Counted words for messages: ``1 profile``, ``2 profiles``, ``1,000 proxies``."""

from __future__ import annotations


def plural(n: int, word: str, words: str | None = None) -> str:
    """``n`` and the word in the right number (``words`` for irregular plurals: proxy/proxies)."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"
