"""SQLite state: one file, safe for many processes at once (WAL, BEGIN IMMEDIATE for updates)."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from integration.errors import ConfigError, PluginError, UpstreamError
from integration.state import Limits

SWEEP_INTERVAL_S = 60.0
# A call stamped later than now by more than this is from a clock that has since stepped
# back: restamped, not waited for.
CLOCK_SLACK_S = 1.0
# How long a write waits for another process's lock before the lookup fails (retryable).
BUSY_TIMEOUT_S = 10.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires REAL,
    PRIMARY KEY (namespace, key));
CREATE INDEX IF NOT EXISTS kv_by_expiry ON kv (expires);
CREATE TABLE IF NOT EXISTS rate_calls (
    bucket TEXT NOT NULL, seq INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (bucket, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rate_calls_by_time ON rate_calls (bucket, at);
CREATE TABLE IF NOT EXISTS rate_pauses (bucket TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
"""


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._db = _open(path)
                break
            except sqlite3.OperationalError as exc:
                # Processes opening a new state at once: switching it to WAL or creating the
                # tables can be refused outright while another does the same. Idempotent:
                # try again rather than call a busy file a configuration error.
                if not _busy(exc) or time.monotonic() > deadline:
                    raise _state_error(path, exc) from exc
                time.sleep(0.05)
            except (OSError, sqlite3.Error) as exc:
                raise _state_error(path, exc) from exc
        self._lock = threading.Lock()  # one connection, shared by this process's threads
        self._swept_at = 0.0
        self._rate_swept_at: dict[str, float] = {}  # per bucket

    def get(self, namespace: str, key: str) -> str | None:
        with self._guarded():
            row = self._db.execute(
                "SELECT value FROM kv WHERE namespace=? AND key=? "
                "AND (expires IS NULL OR expires>?)",
                (namespace, key, time.time())).fetchone()
        return row[0] if row else None

    def put(self, namespace: str, key: str, value: str, ttl_s: float | None = None) -> None:
        now = time.time()
        expires = None if ttl_s is None else now + ttl_s
        with self._guarded():
            self._db.execute("INSERT OR REPLACE INTO kv VALUES (?,?,?,?)",
                             (namespace, key, value, expires))
            # Expired rows are invisible to readers already; sweeping them now and then is
            # enough to keep the file small, and keeps the sweep off most writes.
            if now - self._swept_at > SWEEP_INTERVAL_S:
                self._db.execute("DELETE FROM kv WHERE expires<=?", (now,))
                self._swept_at = now

    def delete(self, namespace: str, key: str) -> None:
        with self._guarded():
            self._db.execute("DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key))

    def keys(self, namespace: str) -> list[str]:
        with self._guarded():
            rows = self._db.execute(
                "SELECT key FROM kv WHERE namespace=? AND (expires IS NULL OR expires>?)",
                (namespace, time.time())).fetchall()
        return [row[0] for row in rows]

    def take_slot(self, bucket: str, limits: Limits) -> float:
        try:
            return self._take_slot(bucket, limits)
        except TypeError:  # a time stored as text: compared with a number, it cannot be
            self._repair_rate_rows(bucket)
            return self._take_slot(bucket, limits)

    def _repair_rate_rows(self, bucket: str) -> None:
        """Rows no process of ours writes: a call or pause time that is not a number is
        deleted, a call stamped in the future (a clock stepped back) is restamped now, so it
        still counts for one window but cannot hold the budget for the whole skew."""
        now = time.time()
        with self._guarded(), self._transaction():
            self._db.execute("DELETE FROM rate_calls WHERE bucket=? AND "
                             "typeof(at) NOT IN ('real', 'integer')", (bucket,))
            self._db.execute("DELETE FROM rate_pauses WHERE bucket=? AND "
                             "typeof(until) NOT IN ('real', 'integer')", (bucket,))
            self._db.execute("UPDATE rate_calls SET at=? WHERE bucket=? AND at>?",
                             (now, bucket, now))

    def _take_slot(self, bucket: str, limits: Limits) -> float:
        # Each call of a bucket gets the next sequence number, and times never go back, so
        # the calls inside a window are a run of numbers: counting them is two index seeks,
        # not a scan of up to an hour's calls. The warm path pays this on every request, so
        # the reads are two statements (each execute costs more than the seeks it runs).
        longest = max(window for window, _ in limits)
        db = self._db
        with self._guarded(), self._transaction():
            last_seq, last_at, paused_until = db.execute(_LAST_CALL_AND_PAUSE,
                                                         (bucket,)).fetchone()
            now = time.time()
            if last_at is not None and last_at > now + CLOCK_SLACK_S:
                raise TypeError("a call stamped in the future")  # repaired by take_slot
            now = max(now, last_at or 0.0)
            if now - self._rate_swept_at.get(bucket, 0.0) > SWEEP_INTERVAL_S:
                # Housekeeping only, at most once a minute per bucket and process: the counts
                # below never look at calls outside a window.
                db.execute("DELETE FROM rate_calls WHERE bucket=? AND at<=?",
                           (bucket, now - longest))
                self._rate_swept_at[bucket] = now
            wait = max(0.0, paused_until - now) if paused_until else 0.0
            firsts = db.execute(_first_in_windows(len(limits)),
                                (bucket, *(now - window for window, _ in limits))).fetchone()
            for (window, allowed), first in zip(limits, firsts, strict=True):
                count = last_seq - first + 1 if first is not None else 0
                if count >= allowed:
                    # The call that must age out before one more fits in this window.
                    (oldest,) = db.execute("SELECT at FROM rate_calls WHERE bucket=? AND seq=?",
                                           (bucket, first + count - allowed)).fetchone()
                    wait = max(wait, oldest + window - now)
            if wait > 0:
                return wait
            db.execute("INSERT INTO rate_calls VALUES (?,?,?)",
                       (bucket, (last_seq or 0) + 1, now))
            return 0.0

    def pause(self, bucket: str, seconds: float) -> None:
        until = time.time() + seconds
        with self._guarded(), self._transaction():
            self._db.execute(
                "INSERT INTO rate_pauses VALUES (?,?) ON CONFLICT(bucket) "
                "DO UPDATE SET until=max(until, excluded.until)", (bucket, until))

    def pause_remaining(self, bucket: str) -> float:
        with self._guarded():
            row = self._db.execute("SELECT until FROM rate_pauses WHERE bucket=?",
                                   (bucket,)).fetchone()
        if not row or not isinstance(row[0], int | float):
            return 0.0  # none, or not a time (take_slot deletes such a row)
        return max(0.0, row[0] - time.time())

    def try_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        with self._guarded(), self._transaction():
            now = time.time()
            row = self._db.execute("SELECT owner, expires FROM leases WHERE name=?",
                                   (name,)).fetchone()
            # A lease whose expiry is not a number was not written by us: free to take.
            if row and row[0] != owner and isinstance(row[1], int | float) and row[1] > now:
                return False
            self._db.execute("INSERT OR REPLACE INTO leases VALUES (?,?,?)",
                             (name, owner, now + ttl_s))
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self._guarded():
            self._db.execute("DELETE FROM leases WHERE name=? AND owner=?", (name, owner))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """This process's threads one at a time; SQLite's failures as the plugin's errors
        (like the Redis store), never a raw sqlite3 exception out of an entry point."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise _state_error(self.path, exc) from exc

    def _transaction(self) -> _Immediate:
        return _Immediate(self._db)


_LAST_CALL_AND_PAUSE = (
    "SELECT (SELECT seq FROM rate_calls WHERE bucket=?1 ORDER BY seq DESC LIMIT 1), "
    "(SELECT at FROM rate_calls WHERE bucket=?1 ORDER BY seq DESC LIMIT 1), "
    "(SELECT until FROM rate_pauses WHERE bucket=?1)")


@functools.cache
def _first_in_windows(windows: int) -> str:
    """One statement: the first call's sequence number inside each window (?2, ?3, ...)."""
    return "SELECT " + ", ".join(
        f"(SELECT seq FROM rate_calls WHERE bucket=?1 AND at>?{n + 2} ORDER BY at LIMIT 1)"
        for n in range(windows))


def _busy(exc: Exception) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _state_error(path: Path, exc: Exception) -> PluginError:
    """SQLite's failure as the plugin's error: a busy file is worth another try later, any
    other failure is the state's configuration (the path, the file, the disk)."""
    if isinstance(exc, sqlite3.OperationalError) and _busy(exc):
        return UpstreamError(f"the SQLite state at {str(path)!r} is locked by another writer "
                             f"(waited {BUSY_TIMEOUT_S:g} s); try again", retryable=True)
    return ConfigError(f"config key 'state': the SQLite state at {str(path)!r} failed: {exc}")


def _open(path: Path) -> sqlite3.Connection:
    _create_owner_only(path)
    # isolation_level=None: we open transactions ourselves, IMMEDIATE where we write after
    # reading, so two processes never both see a free slot and take it.
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                         check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def _create_owner_only(path: Path) -> None:
    """The state holds access tokens: its folder and file are the owner's alone (0700/0600).
    SQLite gives its -wal and -shm files the database file's permissions."""
    import os

    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # another process may race
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(descriptor)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)  # made before this version, or under a loose umask


class _Immediate:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): takes the write lock before reading."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
