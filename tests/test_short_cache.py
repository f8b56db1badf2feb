"""Parsers of outside text remember short values only: a long text is never kept alive."""

from __future__ import annotations

import gc
import weakref

from integration.values.short_cache import short_text_cache


class Text(str):
    """A str that a weak reference can follow, to see whether the cache still holds it."""


def test_a_long_text_is_not_kept_by_the_cache() -> None:
    @short_text_cache(maxsize=8, max_len=16)
    def length(text: str) -> int:
        return len(text)

    long_text = Text("x" * 10_000)
    alive = weakref.ref(long_text)
    assert length(long_text) == 10_000
    del long_text
    gc.collect()
    assert alive() is None


def test_a_short_text_is_parsed_once() -> None:
    calls: list[str] = []

    @short_text_cache(maxsize=8, max_len=16)
    def upper(text: str) -> str:
        calls.append(text)
        return text.upper()

    assert upper("evil.example") == upper("evil.example") == "EVIL.EXAMPLE"
    assert calls == ["evil.example"]
