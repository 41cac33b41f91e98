"""Standard Webhooks signatures (standardwebhooks.com), as receivers verify them.

``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, keyed by the secret in
``STORYCHECK_WEBHOOK_SECRET`` in the spec's ``whsec_<base64>`` form. The secret is read from
the environment only: never stored, never printed (it is registered with the masking).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets as _random

from storycheck_tui.errors import InputError
from storycheck_tui.masking import register_secret

ENV_VAR = "STORYCHECK_WEBHOOK_SECRET"
PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh secret in the ``whsec_<base64>`` form (32 random bytes)."""
    return PREFIX + base64.b64encode(_random.token_bytes(32)).decode("ascii")


def parse_secret(text: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret; one clear line if it is not one."""
    body = text[len(PREFIX):] if text.startswith(PREFIX) else text
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{ENV_VAR}: not a whsec_<base64> secret (storycheck watch secret prints a fresh one)") from None
    if len(key) < 16:
        raise InputError(f"{ENV_VAR}: the secret is shorter than 16 bytes (storycheck watch secret prints a fresh one)")
    return key


def secret_from_env() -> bytes | None:
    """The webhook key from the environment, or None when it is not set."""
    text = os.environ.get(ENV_VAR, "")
    if not text:
        return None
    register_secret(text)
    return parse_secret(text.strip())


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, msg_id, timestamp, body), "content-type": "application/json"}


__all__ = ["ENV_VAR", "new_secret", "parse_secret", "secret_from_env", "sign", "headers"]
