"""A job's lease: held while the job runs, renewed in the background, freed when it ends,
and freed by itself if its holder dies (a TTL). A holder that died on this host is taken
over at once, so a run killed with -9 does not block the next one until the TTL passes.
Durable jobs (a batch of alerts, a sweep) take one so that two runs of one job never work
at once."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING

from integration.errors import RunInProgress

if TYPE_CHECKING:
    from integration.state import StateStore

LEASE_TTL_S = 30.0
HOLDER_KEY = "holder"
HOLDER_TTL_S = 30 * 86400


class Lease:
    """Use as a context manager. `what` says what else is running in the refusal
    ("WHAT is in progress (process ...)")."""

    def __init__(self, store: StateStore, namespace: str, what: str) -> None:
        self.store, self.namespace, self.what = store, namespace, what
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self._acquire()
        self._heartbeat = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._heartbeat.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        self.store.release_lease(self.namespace, self.owner)

    def _acquire(self) -> None:
        deadline = time.monotonic() + LEASE_TTL_S + 1
        while not self.store.try_lease(self.namespace, self.owner, LEASE_TTL_S):
            holder = self.store.get(self.namespace, HOLDER_KEY) or "unknown"
            if _died_here(holder):  # killed: its lease would only block us until it expires
                self.store.try_lease(self.namespace, holder, LEASE_TTL_S)
                self.store.release_lease(self.namespace, holder)
                continue
            if _lives_here(holder) or time.monotonic() > deadline:
                raise RunInProgress(f"{self.what} is in progress (process {holder}); try "
                                  "again when it has finished")
            time.sleep(0.5)
        self.store.put(self.namespace, HOLDER_KEY, self.owner, ttl_s=HOLDER_TTL_S)

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_TTL_S / 3):
            self.store.try_lease(self.namespace, self.owner, LEASE_TTL_S)


def _split_holder(holder: str) -> tuple[str, int] | None:
    host, _, rest = holder.partition(":")
    pid, _, _ = rest.partition(":")
    return (host, int(pid)) if pid.isdigit() else None


def _lives_here(holder: str) -> bool:
    parts = _split_holder(holder)
    return parts is not None and parts[0] == socket.gethostname() and _alive(parts[1])


def _died_here(holder: str) -> bool:
    parts = _split_holder(holder)
    return parts is not None and parts[0] == socket.gethostname() and not _alive(parts[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
