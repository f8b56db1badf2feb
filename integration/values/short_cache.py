"""A memo for parsers of outside text that never keeps a long text alive.

`functools.lru_cache` keys on the whole argument: 40 alerts carrying a 10 MB "domain" kept
400 MB resident for the life of the process. Values worth remembering (domains, times,
addresses) are short, so only short texts are cached; a long one is parsed every time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any, TypeVar

R = TypeVar("R")


def short_text_cache(maxsize: int, max_len: int) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """lru_cache(maxsize) for calls whose first argument is a str of at most max_len."""

    def decorate(function: Callable[..., R]) -> Callable[..., R]:
        cached = lru_cache(maxsize=maxsize)(function)

        @wraps(function)
        def call(text: str, *args: Any) -> R:
            if len(text) > max_len:
                return function(text, *args)
            return cached(text, *args)

        return call

    return decorate
