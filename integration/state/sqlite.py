"""SQLite state: one file, safe for many processes at once (WAL, BEGIN IMMEDIATE for updates)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from integration.errors import ConfigError
from integration.state import Limits

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires REAL,
    PRIMARY KEY (namespace, key));
CREATE TABLE IF NOT EXISTS rate_events (bucket TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rate_events_by_bucket ON rate_events (bucket, at);
CREATE TABLE IF NOT EXISTS rate_pauses (bucket TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
"""


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we open transactions ourselves, IMMEDIATE where we write
            # after reading, so two processes never both see a free slot and take it.
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"config key 'state': cannot open SQLite state at {str(path)!r}: "
                              f"{exc}") from None
        self._lock = threading.Lock()  # one connection, shared by this process's threads

    def get(self, namespace: str, key: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM kv WHERE namespace=? AND key=? "
                "AND (expires IS NULL OR expires>?)",
                (namespace, key, time.time())).fetchone()
        return row[0] if row else None

    def put(self, namespace: str, key: str, value: str, ttl_s: float | None = None) -> None:
        now = time.time()
        expires = None if ttl_s is None else now + ttl_s
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv VALUES (?,?,?,?)",
                             (namespace, key, value, expires))
            self._db.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires<=?", (now,))

    def delete(self, namespace: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key))

    def keys(self, namespace: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key FROM kv WHERE namespace=? AND (expires IS NULL OR expires>?)",
                (namespace, time.time())).fetchall()
        return [row[0] for row in rows]

    def take_slot(self, bucket: str, limits: Limits) -> float:
        longest = max(window for window, _ in limits)
        with self._lock, self._transaction():
            now = time.time()
            self._db.execute("DELETE FROM rate_events WHERE bucket=? AND at<=?",
                             (bucket, now - longest))
            row = self._db.execute("SELECT until FROM rate_pauses WHERE bucket=?",
                                   (bucket,)).fetchone()
            wait = max(0.0, row[0] - now) if row else 0.0
            for window, allowed in limits:
                (count,) = self._db.execute(
                    "SELECT count(*) FROM rate_events WHERE bucket=? AND at>?",
                    (bucket, now - window)).fetchone()
                if count >= allowed:
                    # The call that must age out before one more fits in this window.
                    (oldest,) = self._db.execute(
                        "SELECT at FROM rate_events WHERE bucket=? AND at>? ORDER BY at "
                        "LIMIT 1 OFFSET ?", (bucket, now - window, count - allowed)).fetchone()
                    wait = max(wait, oldest + window - now)
            if wait <= 0:
                self._db.execute("INSERT INTO rate_events VALUES (?,?)", (bucket, now))
                return 0.0
            return wait

    def pause(self, bucket: str, seconds: float) -> None:
        until = time.time() + seconds
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO rate_pauses VALUES (?,?) ON CONFLICT(bucket) "
                "DO UPDATE SET until=max(until, excluded.until)", (bucket, until))

    def try_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        with self._lock, self._transaction():
            now = time.time()
            row = self._db.execute("SELECT owner, expires FROM leases WHERE name=?",
                                   (name,)).fetchone()
            if row and row[0] != owner and row[1] > now:
                return False
            self._db.execute("INSERT OR REPLACE INTO leases VALUES (?,?,?)",
                             (name, owner, now + ttl_s))
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM leases WHERE name=? AND owner=?", (name, owner))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> _Immediate:
        return _Immediate(self._db)


class _Immediate:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): takes the write lock before reading."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
