"""A durable batch: every alert of a directory (*.json) or an NDJSON file, enriched into an
output directory, one file per alert. Built to be killed at any moment and run again.

* Progress lives in the state store under a namespace keyed by the batch's identity (source,
  output directory, playbook, tenant): `done:<output name>` holds the digest of the alert it
  was made from, so an alert that changed since is done again.
* Each output is written atomically: a temp file in the output directory, fsync, os.replace,
  fsync of the directory. A reader (or a restarted run) sees the old file or the new one,
  never half of one; temp files a kill leaves behind are removed by the next run.
* Every lookup's answer (success or not_found) goes into a batch memo in the state store
  *before* the alert's output is written, so no indicator is asked twice in the batch, even
  across a kill and restart. Only a request in flight at the moment of the kill is repeated.
* A lease (renewed while the batch runs, freed by itself if its holder dies) keeps two runs
  of one batch from working at once; a holder that died on this host is taken over at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from integration.bounded import ALERT, parse_json
from integration.errors import EXIT_INPUT, InvalidInput, PluginError, RunInProgress
from integration.playbook.errors import AlertError
from integration.playbook.lookups import StoreMemo

if TYPE_CHECKING:
    from integration.playbook.engine import PlaybookRunner
    from integration.state import StateStore

STATE_TTL_S = 30 * 86400  # a batch's progress and memo are kept for a month
LEASE_TTL_S = 30.0
_HOLDER_KEY = "holder"


@dataclass(frozen=True)
class BatchItem:
    name: str  # the output's file name
    label: str  # where the alert came from, for messages
    read: Callable[[], bytes]
    # What makes the work the same: by default the alert's bytes; a pulled alert leaves out
    # the fields that change without new work (its own comments, lastUpdateDateTime).
    digest: str | None = None


# What became of one alert in one run (Batch.run's on_outcome hears each):
ENRICHED, ALREADY_DONE, INCOMPLETE, FAILED, QUARANTINED, LEFT = (
    "enriched", "already_done", "incomplete", "failed", "quarantined", "left")
FAILED_DIR, QUARANTINE_DIR = "failed", "quarantine"


@dataclass
class BatchSummary:
    total: int = 0
    enriched: int = 0  # written by this run, every lookup answered
    incomplete: int = 0  # some lookups failed: in failed/, done again by the next run
    failed: int = 0  # a step failed or the alert could not be read: in failed/, tried again
    quarantined: int = 0  # malformed: moved aside to quarantine/ once, never tried again
    left: int = 0  # not reached before the deadline: the next run does it
    already_done: int = 0  # done by an earlier run
    lookups: int = 0  # indicators sent to Defender by this run
    memo_hits: int = 0  # indicators answered from the batch memo
    exit_status: int = 0
    out_dir: str = ""
    # Each distinct cause once: {"code", "message", "count"} (count: alerts it touched).
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add_error(self, code: str, message: str) -> None:
        for error in self.errors:
            if error["code"] == code and error["message"] == message:
                error["count"] += 1
                return
        self.errors.append({"code": code, "message": message, "count": 1})

    def describe(self) -> str:
        extra = "".join(f", {count} {what}" for count, what in (
            (self.quarantined, "quarantined"), (self.left, "left for the next run")) if count)
        return (f"{self.total} alert(s): {self.enriched} enriched, {self.already_done} already "
                f"done, {self.incomplete} with failed lookups, {self.failed} failed{extra}; "
                f"{self.lookups} lookup(s), {self.memo_hits} answered from the batch memo; "
                f"output in {self.out_dir}")


def batch_items(source: Path) -> list[BatchItem]:
    """A directory's *.json files by name, or an NDJSON file's non-blank lines by number. A
    file or line holding a page (`{"value": [...]}`) or an array of alerts is split into its
    alerts, as `--alert` does, each with an output of its own (`name-0001.json`, ...)."""
    if source.is_dir():
        items: list[BatchItem] = []
        for path in sorted(source.glob("*.json")):
            if path.is_file():
                items += _split(path.stem, str(path), path.read_bytes(), path.read_bytes)
        return items
    if source.is_file():
        try:
            lines = source.read_bytes().splitlines()
        except OSError as exc:
            raise InvalidInput(f"{source}: cannot be read: {exc.strerror}") from None
        width = max(6, len(str(len(lines))))
        items = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                items += _split(f"{source.stem}-{number:0{width}d}", f"{source} line {number}",
                                line, _constant(line))
        return items
    raise InvalidInput(f"{source}: no such directory or NDJSON file")


def _split(stem: str, label: str, data: bytes, read: Callable[[], bytes]) -> list[BatchItem]:
    """One item, or one per alert when `data` is a page or an array of alerts. Unreadable
    JSON stays one item: enriching it reports the problem where it belongs."""
    from integration.playbook.alerts import split_alerts

    try:
        batch = split_alerts(parse_json(data, limits=ALERT, what=label))
    except InvalidInput:
        batch = None
    if batch is None or batch.shape is None:
        return [BatchItem(f"{stem}.json", label, read)]
    width = max(4, len(str(len(batch.alerts))))
    return [BatchItem(f"{stem}-{index:0{width}d}.json", f"{label} item {index}",
                      _constant(json.dumps(alert).encode()))
            for index, alert in enumerate(batch.alerts, 1)]


class Batch:
    """Use as a context manager: it holds the batch's lease while open."""

    def __init__(self, store: StateStore, *, source: Path | str, out_dir: Path,
                 identity: Mapping[str, str]) -> None:
        """`source`: a folder or NDJSON file, or the name of a pull (items given to run)."""
        self.store, self.source, self.out_dir = store, source, out_dir
        where = str(source.resolve()) if isinstance(source, Path) else source
        key = json.dumps({"source": where, "out": str(out_dir.resolve()),
                          **identity}, sort_keys=True)
        self.id = hashlib.sha256(key.encode()).hexdigest()[:24]
        self.namespace = f"batch:{self.id}"
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.memo: StoreMemo | None = None

    def __enter__(self) -> Batch:
        self._acquire()
        try:
            self.memo = StoreMemo(self.store, f"batch-memo:{self.id}", STATE_TTL_S)
        except BaseException:
            self.store.release_lease(self.namespace, self._owner)
            raise
        self._heartbeat = threading.Thread(target=self._renew, name="batch-lease", daemon=True)
        self._heartbeat.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        self.store.release_lease(self.namespace, self._owner)

    def run(self, runner: PlaybookRunner, *, progress: IO[str] | None = None,
            report: Callable[[str], None] = lambda message: None,
            items: list[BatchItem] | None = None,
            on_outcome: Callable[[BatchItem, str, dict[str, Any] | None], None] | None = None,
            deadline: float | None = None) -> BatchSummary:
        """Enrich every item (by default those of the source); `deadline` (time.monotonic)
        is when the run stops starting alerts: the rest are left for the next run."""
        if items is None:
            if not isinstance(self.source, Path):
                raise TypeError("a pulled batch is run with its items")
            items = batch_items(self.source)
        _make_directory(self.out_dir)
        self._remove_stale_temp_files()
        summary = BatchSummary(total=len(items), out_dir=str(self.out_dir))
        bar = _Progress(len(items), progress)
        lookups, memo_hits = runner.lookups.looked_up, runner.lookups.memo_hits
        def say(message: str) -> None:
            bar.clear()  # a message on its own line, not glued to the bar
            report(message)

        from integration.defender.budget import paced_until

        with paced_until(deadline):  # the budget waits up to the deadline, not max_rate_wait_s
            for done, item in enumerate(items, 1):
                if deadline is not None and time.monotonic() >= deadline:
                    outcome, document = LEFT, None
                else:
                    outcome, document = self._one(item, runner, summary, say, deadline)
                if outcome == LEFT:
                    summary.left += 1
                if on_outcome is not None:
                    on_outcome(item, outcome, document)
                bar.show(done)
        bar.close()
        summary.lookups = runner.lookups.looked_up - lookups
        summary.memo_hits = runner.lookups.memo_hits - memo_hits
        # The memo is for resuming this run after a kill, not for the next run: a batch run
        # again tomorrow over the same folder must ask Defender afresh for its new alerts.
        if self.memo is not None and not summary.left:
            self.memo.clear()
        return summary

    # -- one alert -----------------------------------------------------------------------

    def _one(self, item: BatchItem, runner: PlaybookRunner, summary: BatchSummary,
             report: Callable[[str], None],
             deadline: float | None) -> tuple[str, dict[str, Any] | None]:
        output = self.out_dir / item.name
        try:
            data = item.read()
        except OSError as exc:
            self._failed(summary, item, InvalidInput(f"{item.label}: cannot be read: "
                                                     f"{exc.strerror}"), report)
            return FAILED, None
        digest = item.digest or hashlib.sha256(data).hexdigest()
        done = self.store.get(self.namespace, f"done:{item.name}")
        if done == digest and output.is_file():
            summary.already_done += 1
            return ALREADY_DONE, None
        if done == f"quarantined:{digest}":
            summary.already_done += 1  # said once, when it was quarantined
            return ALREADY_DONE, None
        try:
            alert = parse_json(data, limits=ALERT, what=item.label)
        except InvalidInput as error:  # not JSON, too large or too deep
            self._quarantine(summary, item, data, digest, error, report)
            return QUARANTINED, None
        try:
            result = runner.run(alert, source=item.label)
        except AlertError as error:
            self._quarantine(summary, item, data, digest, error, report)
            return QUARANTINED, None
        except PluginError as error:
            self._failed(summary, item, error, report)
            return FAILED, None
        causes = _causes(result.envelopes)
        if result.exit_status and deadline is not None and \
                all(code == "rate_limited" for code, _ in causes):
            # Paced to a deadline, the budget gives up only when its wait would cross it:
            # the next run's work, not a failure.
            return LEFT, None
        if result.exit_status:
            # Not among the enriched: in failed/ with its reasons, and done again next run.
            summary.incomplete += 1
            summary.exit_status = max(summary.exit_status, result.exit_status)
            for code, message in causes:
                summary.add_error(code, message)
            failure = {"reason": "some lookups failed",
                       "errors": [{"code": c, "message": m} for c, m in causes]}
            self._write_failed(item.name, {**result.document, "failure": failure})
            return INCOMPLETE, result.document
        write_atomically(output, _json_bytes(result.document), tag=self.id[:12])
        self.store.put(self.namespace, f"done:{item.name}", digest, ttl_s=STATE_TTL_S)
        with contextlib.suppress(FileNotFoundError):
            (self.out_dir / FAILED_DIR / item.name).unlink()  # an earlier run's failure
        summary.enriched += 1
        return ENRICHED, result.document

    def _failed(self, summary: BatchSummary, item: BatchItem, error: PluginError,
                report: Callable[[str], None]) -> None:
        summary.failed += 1
        summary.exit_status = max(summary.exit_status, error.exit_status or EXIT_INPUT)
        summary.add_error(error.code, error.message)
        self._write_failed(item.name, {"source": item.label, "failure": {
            "reason": "the alert could not be enriched",
            "errors": [{"code": error.code, "message": error.message}]}})
        report(f"{error.code}: {error.message}")

    def _quarantine(self, summary: BatchSummary, item: BatchItem, data: bytes, digest: str,
                    error: PluginError, report: Callable[[str], None]) -> None:
        """A malformed alert: kept aside as it came with its reason, said once, and skipped
        by every later run until it changes."""
        folder = self.out_dir / QUARANTINE_DIR
        _make_directory(folder)
        write_atomically(folder / item.name, data, tag=self.id[:12])
        write_atomically(folder / f"{item.name}.reason.txt",
                         f"{item.label}\n{error.code}: {error.message}\n".encode(),
                         tag=self.id[:12])
        self.store.put(self.namespace, f"done:{item.name}", f"quarantined:{digest}",
                       ttl_s=STATE_TTL_S)
        summary.quarantined += 1
        summary.exit_status = max(summary.exit_status, error.exit_status or EXIT_INPUT)
        summary.add_error(error.code, error.message)
        report(f"{error.code}: {error.message} (quarantined in {folder})")

    def _write_failed(self, name: str, document: dict[str, Any]) -> None:
        folder = self.out_dir / FAILED_DIR
        _make_directory(folder)
        write_atomically(folder / name, _json_bytes(document), tag=self.id[:12])

    def _remove_stale_temp_files(self) -> None:
        # Ours only (they carry the batch id), and only while we hold the lease.
        for stale in self.out_dir.glob(f".*.{self.id[:12]}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    # -- the lease -----------------------------------------------------------------------

    def _acquire(self) -> None:
        deadline = time.monotonic() + LEASE_TTL_S + 1
        while not self.store.try_lease(self.namespace, self._owner, LEASE_TTL_S):
            holder = self.store.get(self.namespace, _HOLDER_KEY) or "unknown"
            if _died_here(holder):  # killed: its lease would only block us until it expires
                self.store.try_lease(self.namespace, holder, LEASE_TTL_S)
                self.store.release_lease(self.namespace, holder)
                continue
            if _lives_here(holder) or time.monotonic() > deadline:
                raise RunInProgress(f"{self.out_dir}: another run of this batch is in progress "
                                  f"(process {holder}); try again when it has finished")
            time.sleep(0.5)
        self.store.put(self.namespace, _HOLDER_KEY, self._owner, ttl_s=STATE_TTL_S)

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_TTL_S / 3):
            self.store.try_lease(self.namespace, self._owner, LEASE_TTL_S)


def _causes(envelopes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The distinct (code, message) of a run's failed lookups, in order."""
    found: dict[tuple[str, str], None] = {}
    for envelope in envelopes:
        error = envelope.get("error") if envelope.get("status") == "error" else None
        if isinstance(error, dict):
            found[(str(error.get("code", "upstream_error")), str(error.get("message", "")))] = None
    return list(found)


def _make_directory(path: Path) -> None:
    """The output folder (and its parents); a path that cannot be one is bad input."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidInput(f"--out {path}: exists and is not a directory") from None
    except OSError as exc:
        raise InvalidInput(f"--out {path}: cannot be created: {exc.strerror}") from None
    if not path.is_dir():
        raise InvalidInput(f"--out {path}: exists and is not a directory")


def write_atomically(path: Path, data: bytes, *, tag: str = "") -> None:
    """Whole or not at all, and durable once this returns."""
    temp = path.with_name(f".{path.name}.{tag}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # O_EXCL: never someone else's file; mode 0o666 so the umask decides, as for any file.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """The rename itself survives a power cut only once the directory is synced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not possible on every platform (Windows); the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_bytes(document: Any) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


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


class _Progress:
    """A one-line progress bar on stderr, only when it is a terminal."""

    WIDTH = 30

    def __init__(self, total: int, stream: IO[str] | None) -> None:
        self.total = total
        self.stream = stream if stream is not None and _isatty(stream) else None

    def show(self, done: int) -> None:
        if self.stream is None or not self.total:
            return
        filled = self.WIDTH * done // self.total
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                          f"{done}/{self.total} alerts")
        self.stream.flush()

    def clear(self) -> None:
        if self.stream is not None:
            self.stream.write("\r" + " " * (self.WIDTH + 30) + "\r")
            self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.total:
            self.stream.write("\n")
            self.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _constant(line: bytes) -> Callable[[], bytes]:
    """A reader for a line already read (each NDJSON item's bytes)."""
    return lambda: line
