"""Shared state: token cache, result cache, rate budget and job progress.

Every process that opens the same state (a SQLite file, or one Redis database) shares the
token, the cached results and the rate budget. `open_store` picks the backend by URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from integration.errors import ConfigError

# (window in seconds, calls allowed in it)
Limits = Sequence[tuple[float, int]]


class StateStore(Protocol):
    def get(self, namespace: str, key: str) -> str | None:
        """The value, or None when absent or expired."""

    def put(self, namespace: str, key: str, value: str, ttl_s: float | None = None) -> None: ...

    def delete(self, namespace: str, key: str) -> None: ...

    def keys(self, namespace: str) -> list[str]:
        """Every live key of a namespace (job progress reads its done-list this way)."""

    def take_slot(self, bucket: str, limits: Limits) -> float:
        """Take one call from the budget: 0.0 when taken, else the seconds until one may free.

        Atomic across processes. A pause set by `pause` counts as a full budget until it ends.
        """

    def pause(self, bucket: str, seconds: float) -> None:
        """Hold every caller of `bucket` for `seconds` (a 429's Retry-After)."""

    def pause_remaining(self, bucket: str) -> float:
        """Seconds until a pause set by `pause` ends; 0.0 when there is none."""

    def try_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take or renew a lease that expires by itself, so a dead holder frees it."""

    def release_lease(self, name: str, owner: str) -> None: ...

    def close(self) -> None: ...


def default_state_url() -> str:
    from platformdirs import user_cache_dir

    return f"sqlite://{Path(user_cache_dir('mde-enrich')) / 'state.sqlite3'}"


def sqlite_path(url: str) -> Path:
    """The file a SQLite state URL names, the way users write it:

    sqlite:///var/lib/mde/state.db and sqlite:////var/lib/mde/state.db   absolute
    sqlite:state.db, sqlite:./state.db, sqlite:///./state.db               relative to the
                                                                           working directory
    sqlite:///~/mde/state.db                                               under the home folder
    """
    rest = url.removeprefix("sqlite:")
    if rest.startswith("//"):
        rest = rest[2:]  # the empty authority of sqlite:///path
    if rest.startswith("/./") or rest.startswith("/~"):
        rest = rest[1:]
    if rest.startswith("/"):
        rest = "/" + rest.lstrip("/")
    if not rest or rest.endswith("/"):
        raise ConfigError(f"config key 'state': {url!r} names no file; use "
                          "sqlite:///absolute/path.db or sqlite:relative/path.db")
    return Path(rest).expanduser()


def open_store(url: str | None) -> StateStore:
    url = url or default_state_url()
    if url.startswith("sqlite:"):
        from integration.state.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(url))
    if url.startswith(("redis://", "rediss://")):
        from integration.state.redis import RedisStore

        return RedisStore(url)
    raise ConfigError(f"config key 'state': unsupported state URL {url!r}; "
                      "use sqlite:///absolute/path.db, sqlite:relative/path.db or "
                      "redis://host:port/db")
