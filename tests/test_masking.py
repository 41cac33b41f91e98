"""Secrets stay out of every output: URL masking, proxy labels, the registry."""

from __future__ import annotations

import threading
import time

import pytest

from storycheck_tui.masking import SecretRegistry, mask_url, proxy_label


@pytest.mark.parametrize(
    "text, expected",
    [
        ("http://bob:s3cret@h:1", "http://bob:***@h:1"),
        ("postgresql://app:pw@db:5432/story", "postgresql://app:***@db:5432/story"),
        ("socks5h://bob:@h:1", "socks5h://bob:***@h:1"),
        ("http://bob@h:1", "http://bob@h:1"),
        ("http://h:1/a@b", "http://h:1/a@b"),
        ("https://www.tiktok.com/@name", "https://www.tiktok.com/@name"),
        ("http://h:1?next=a:b@c", "http://h:1?next=a:b@c"),
        # a raw '@' in the password: the userinfo runs to the last '@', as urlsplit reads it
        ("http://bob:p@ss@h:1", "http://bob:***@h:1"),
        ("http://bob:p@ss:w@rd@h:1/x", "http://bob:***@h:1/x"),
        ("failed via http://a:x1@h:1 and socks5://b:y2@g:2.", "failed via http://a:***@h:1 and socks5://b:***@g:2."),
    ],
)
def test_mask_url(text, expected):
    assert mask_url(text) == expected


@pytest.mark.parametrize(
    "url, label",
    [
        ("http://bob:s3cret@h.example:8080", "http://bob@h.example:8080"),
        ("socks5h://[2001:db8::1]:1080", "socks5h://[2001:db8::1]:1080"),
        ("http://bob:pw@[::1]:8080", "http://bob@[::1]:8080"),
        ("http://h.example", "http://h.example"),
        ("http://bob:s3cret@h:99999", "http://bob:***@h:99999"),  # bad port: falls back to masking
    ],
)
def test_proxy_label(url, label):
    assert proxy_label(url) == label


def test_registry_scrubs_known_values_longest_first():
    reg = SecretRegistry()
    reg.add("abc")  # too short: ignored
    reg.add("hunter2")
    reg.add("hunter22")
    reg.add(None)
    assert reg.scrub("pw hunter22 / hunter2 / abc") == "pw *** / *** / abc"


def test_registry_add_after_scrub_is_seen():
    reg = SecretRegistry()
    reg.add("first-secret")
    assert reg.scrub("first-secret") == "***"
    reg.add("second-secret")
    assert reg.scrub("first-secret second-secret") == "*** ***"


def test_registry_many_values_stay_linear():
    """add() used to recompile the whole pattern each time: 3,000 values took a minute."""
    reg = SecretRegistry()
    start = time.perf_counter()
    for i in range(20_000):
        reg.add(f"password-{i:06d}")
    assert reg.scrub("x password-012345 y") == "x *** y"
    assert time.perf_counter() - start < 5


def test_registry_threads():
    reg = SecretRegistry()
    errors: list[BaseException] = []

    def adder(k: int) -> None:
        try:
            for i in range(50):
                reg.add(f"secret-{k}-{i:04d}")
                reg.scrub(f"secret-{k}-{i:04d}")
        except Exception as exc:  # noqa: BLE001  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=adder, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert reg.scrub("secret-3-0049 secret-0-0000") == "*** ***"
