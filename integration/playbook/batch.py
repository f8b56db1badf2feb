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
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from integration.errors import ConfigError, InvalidInput
from integration.playbook.lookups import StoreMemo
from integration.playbook.outcome import (
    Enriched,
    Failed,
    Left,
    Outcome,
    alert_digest,
    enrich_item,
    in_order,
)
from integration.state.lease import Lease

if TYPE_CHECKING:
    from integration.playbook.engine import PlaybookRunner
    from integration.state import StateStore

STATE_TTL_S = 30 * 86400  # a batch's progress and memo are kept for a month
OUT_CLAIMS = "batch-out"  # output directory -> the source whose outputs it holds
FAILED_DIR, QUARANTINE_DIR = "failed", "quarantine"  # inside the output directory


@dataclass(frozen=True)
class BatchItem:
    name: str  # the output's file name
    label: str  # where the alert came from, for messages
    alert: Any  # None when `problem` says why it could not be read
    problem: str | None = None
    # What makes the work the same (default: the alert's JSON); a pulled alert's leaves out
    # the fields that change without new work (our own comment, lastUpdateDateTime).
    digest: str | None = None


@dataclass
class BatchSummary:
    total: int = 0
    enriched: int = 0  # written by this run, every lookup answered
    incomplete: int = 0  # some lookups failed: in failed/, done again by the next run
    failed: int = 0  # a failed step, an output that could not be written: in failed/
    quarantined: int = 0  # never enrichable as given: in quarantine/, said once
    left: int = 0  # not reached before the --deadline: the next run does it
    already_done: int = 0  # done (or quarantined) by an earlier run
    lookups: int = 0  # indicators sent to Defender by this run
    memo_hits: int = 0  # indicators answered from the batch memo
    exit_status: int = 0
    out_dir: str = ""
    # Each distinct cause once: {"code", "message", "count"} (count: the alerts it touched).
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
        left = f", {self.left} left for the next run" if self.left else ""
        return (f"{self.total} alert(s): {self.enriched} enriched, {self.already_done} already "
                f"done, {self.incomplete} with failed lookups, {self.failed} failed, "
                f"{self.quarantined} quarantined{left}; {self.lookups} lookup(s), "
                f"{self.memo_hits} answered from the batch memo; output in {self.out_dir}")


def batch_items(source: Path) -> Iterator[BatchItem]:
    """A directory's *.json files by name, or an NDJSON file's non-blank lines by number,
    read one alert at a time. A file or line holding a page (`{"value": [...]}`) or an array
    of alerts is split into its alerts, as `--alert` does, each with an output of its own
    (`name-0001.json`, ...). An item that cannot be read comes with its problem."""
    if source.is_dir():
        for path in sorted(source.glob("*.json")):
            if path.is_file() and not path.name.startswith("."):  # not temp files
                yield from _file_items(path, path.stem, by_line=False)
        return
    if source.is_file():
        yield from _file_items(source, source.stem, by_line=True)
        return
    raise InvalidInput(f"{source}: no such directory or NDJSON file")


def _file_items(path: Path, stem: str, *, by_line: bool) -> Iterator[BatchItem]:
    from integration.playbook.stream import read_stream

    try:
        stream = path.open("rb")
    except OSError as exc:
        yield BatchItem(f"{stem}.json", str(path), None, f"cannot be read: {exc.strerror}")
        return
    with stream:
        try:
            for item in read_stream(stream, str(path)):
                if item.empty:
                    continue
                name = f"{stem}-{item.line:06d}" if by_line or item.shape == "ndjson" else stem
                if item.index is not None:
                    name += f"-{item.index:04d}"
                yield BatchItem(f"{name}.json", item.label, item.alert, item.problem)
        except OSError as exc:  # a read error halfway: the rest of the file is unreadable
            yield BatchItem(f"{stem}.json", str(path), None, f"cannot be read: {exc.strerror}")


class Batch:
    """Use as a context manager: it holds the batch's lease while open."""

    def __init__(self, store: StateStore, *, source: Path | str, out_dir: Path,
                 identity: Mapping[str, str]) -> None:
        """`source`: a folder or NDJSON file, or the name of a pull (its items given to run)."""
        self.store, self.source, self.out_dir = store, source, out_dir
        key = json.dumps({"source": self._source_name, "out": str(out_dir.resolve()),
                          **identity}, sort_keys=True)
        self.id = hashlib.sha256(key.encode()).hexdigest()[:24]
        self.namespace = f"batch:{self.id}"
        self._lease = Lease(store, self.namespace, f"{out_dir}: another run of this batch")
        self.memo: StoreMemo | None = None

    @property
    def _source_name(self) -> str:
        return str(self.source.resolve()) if isinstance(self.source, Path) else self.source

    def __enter__(self) -> Batch:
        self._lease.__enter__()
        try:
            self.memo = StoreMemo(self.store, f"batch-memo:{self.id}", STATE_TTL_S)
        except BaseException:
            self._lease.release()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self._lease.release()

    def run(self, runner: PlaybookRunner, *, progress: IO[str] | None = None,
            report: Callable[[str], None] = lambda message: None,
            on_outcome: Callable[[BatchItem, Outcome | Left | None], None] | None = None,
            items: Iterable[BatchItem] | None = None,
            deadline: float | None = None) -> BatchSummary:
        """Every item (by default those of the source), up to 2 x max_concurrency alerts in
        flight at once (their lookups bounded by max_concurrency together), outputs written
        in input order. `on_outcome` sees what became of each item (None: done already).
        `deadline` (time.monotonic()): the budget waits for a call until then instead of
        max_rate_wait_s, and what the run did not reach by then is Left for the next run."""
        from integration.defender.budget import paced_until

        if items is None:
            if not isinstance(self.source, Path) or not (self.source.is_dir()
                                                         or self.source.is_file()):
                raise InvalidInput(f"{self.source}: no such directory or NDJSON file")
            items = batch_items(self.source)
        self._claim_out_dir()
        self._remove_stale_temp_files()
        summary = BatchSummary(out_dir=str(self.out_dir))
        bar = _Progress(progress)
        lookups, memo_hits = runner.lookups.looked_up, runner.lookups.memo_hits
        def say(message: str) -> None:
            bar.clear()  # a message on its own line, not glued to the bar
            report(message)

        window = 2 * runner.lookups.in_flight
        with paced_until(deadline):
            for item, outcome in in_order(
                    items, lambda item: (item, self._enrich(item, runner, deadline)), window):
                summary.total += 1
                if outcome is None:
                    summary.already_done += 1
                else:
                    outcome = self._record(item, outcome, summary, say)
                if on_outcome is not None:
                    on_outcome(item, outcome)
                bar.show(summary.total)
        bar.close()
        summary.lookups = runner.lookups.looked_up - lookups
        summary.memo_hits = runner.lookups.memo_hits - memo_hits
        # The memo is for resuming this run after a kill, not for the next run: a batch run
        # again tomorrow over the same folder must ask Defender afresh for its new alerts
        # (what the deadline left is the next run's to resume, memo included).
        if self.memo is not None and not summary.left:
            self.memo.clear()
        return summary

    # -- one alert -----------------------------------------------------------------------

    def _enrich(self, item: BatchItem, runner: PlaybookRunner,
                deadline: float | None) -> Outcome | Left | None:
        """The item's outcome, or None when an earlier run did it (on an alert thread)."""
        digest = _digest(item)
        done = self.store.get(self.namespace, f"done:{item.name}")
        if done == f"quarantined:{digest}":
            return None  # said once, when it was set aside
        if item.problem is not None:
            return enrich_item(runner, item.label, None, item.problem, digest=digest)
        if done == digest and (self.out_dir / item.name).is_file():
            return None
        if deadline is not None and time.monotonic() >= deadline:
            return Left(item.label)
        outcome = enrich_item(runner, item.label, item.alert, digest=digest)
        if deadline is not None and isinstance(outcome, Enriched) and not outcome.complete \
                and all(code == "rate_limited" for code, _ in causes(outcome)):
            # Paced to a deadline, the budget gives up only when its wait would cross it.
            return Left(item.label)
        return outcome

    def _record(self, item: BatchItem, outcome: Outcome | Left, summary: BatchSummary,
                report: Callable[[str], None]) -> Outcome | Left:
        """Write an enriched alert and count the outcome (in input order, one at a time).
        Only a complete enrichment goes into the output folder: the rest into failed/ or
        quarantine/, each with its reason."""
        if isinstance(outcome, Left):
            summary.left += 1
            return outcome
        if isinstance(outcome, Enriched) and outcome.complete:
            try:
                write_atomically(self.out_dir / item.name, _json_bytes(outcome.result.document),
                                 tag=self.id[:12])
            except OSError as exc:
                outcome = Failed(item.label, ConfigError(
                    f"{item.label}: cannot write {self.out_dir / item.name}: "
                    f"{exc.strerror or exc}"), outcome.digest)
        summary.exit_status = max(summary.exit_status, outcome.exit_status)
        if isinstance(outcome, Enriched):
            if not outcome.complete:  # not marked done: its failed lookups are tried again
                summary.incomplete += 1
                found = causes(outcome)
                for code, message in found:
                    summary.add_error(code, message)
                report(f"{item.label}: some lookups failed: "
                       + "; ".join(f"{code}: {message}" for code, message in found))
                self._set_aside(FAILED_DIR, item.name, _json_bytes(
                    {**outcome.result.document, "failure": {
                        "reason": "some lookups failed",
                        "errors": [{"code": c, "message": m} for c, m in found]}}))
                return outcome
            self.store.put(self.namespace, f"done:{item.name}", outcome.digest,
                           ttl_s=STATE_TTL_S)
            with contextlib.suppress(OSError):
                (self.out_dir / FAILED_DIR / item.name).unlink()  # an earlier run's failure
            summary.enriched += 1
            return outcome
        if isinstance(outcome, Failed):
            summary.failed += 1
            code, message = outcome.error.code, outcome.error.message
            self._set_aside(FAILED_DIR, item.name, _json_bytes({"source": item.label, "failure": {
                "reason": "the alert could not be enriched",
                "errors": [{"code": code, "message": message}]}}))
        else:
            summary.quarantined += 1
            code, message = "invalid_input", outcome.reason
            if outcome.alert is not None:
                self._set_aside(QUARANTINE_DIR, item.name, _json_bytes(outcome.alert))
            self._set_aside(QUARANTINE_DIR, f"{item.name}.reason.txt",
                            f"{item.label}\n{code}: {message}\n".encode())
            self.store.put(self.namespace, f"done:{item.name}", f"quarantined:{_digest(item)}",
                           ttl_s=STATE_TTL_S)
        summary.add_error(code, message)
        report(f"{code}: {message}")
        return outcome

    def _set_aside(self, folder: str, name: str, data: bytes) -> None:
        """A failed or quarantined item's file, best effort: the reason is in the summary
        and on stderr even when the folder cannot be written."""
        directory = self.out_dir / folder
        with contextlib.suppress(OSError):
            directory.mkdir(exist_ok=True)
            write_atomically(directory / name, data, tag=self.id[:12])

    def _claim_out_dir(self) -> None:
        """One --out belongs to one batch: a second batch over another source is refused,
        so that its outputs never mix with (or overwrite) the first one's. The claim lives
        in the state store, beside the batch's progress, as long as that progress."""
        _make_directory(self.out_dir)
        out, mine = str(self.out_dir.resolve()), self._source_name
        owner = self.store.get(OUT_CLAIMS, out)
        if owner is not None and owner != mine:
            raise ConfigError(f"{self.out_dir}: holds the outputs of another batch (over "
                              f"{owner}); give each batch its own --out")
        self.store.put(OUT_CLAIMS, out, mine, ttl_s=STATE_TTL_S)

    def _remove_stale_temp_files(self) -> None:
        # Ours only (they carry the batch id), and only while we hold the lease.
        for stale in self.out_dir.glob(f".*.{self.id[:12]}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _digest(item: BatchItem) -> str:
    """What the work of an item is: its own digest, its alert's, or (unreadable) its
    label and problem, so that a quarantined item is recognized until it changes."""
    if item.digest:
        return item.digest
    if item.problem is None:
        return alert_digest(item.alert)
    return hashlib.sha256(f"{item.label}\n{item.problem}".encode()).hexdigest()


def causes(outcome: Enriched) -> list[tuple[str, str]]:
    """The distinct (code, message) of an enrichment's failed lookups, in order."""
    found: dict[tuple[str, str], None] = {}
    for envelope in outcome.result.envelopes:
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
_TEMP_NUMBERS = itertools.count()


def temp_suffix() -> str:
    """Unique to this process and call: a temp file's name (O_EXCL refuses any clash).
    Not uuid4: os.urandom costs up to a millisecond under load, once per output."""
    return f"{os.getpid()}-{next(_TEMP_NUMBERS)}"


def open_temp(path: Path, tag: str = "") -> tuple[Path, int]:
    """A new temp file beside `path`, open for writing. O_EXCL: never someone else's file
    (a name left by a dead process of the same id is passed over); mode 0o666 so the umask
    decides, as for any file."""
    while True:
        temp = path.with_name(f".{path.name}.{tag}.{temp_suffix()}.tmp")
        try:
            return temp, os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def write_atomically(path: Path, data: bytes, *, tag: str = "") -> None:
    """Whole or not at all, and durable once this returns."""
    temp, fd = open_temp(path, tag)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
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
    """Compact: a batch's files are read by programs (pretty output is for a terminal)."""
    return (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"
            ).encode("utf-8")


class _Progress:
    """A one-line count of the alerts done on stderr, only when it is a terminal (the input
    is a stream: its length is not known in advance)."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.stream = stream if stream is not None and _isatty(stream) else None
        self.shown = 0

    def show(self, done: int) -> None:
        if self.stream is None:
            return
        self.shown = done
        self.stream.write(f"\r{done} alert(s) done")
        self.stream.flush()

    def clear(self) -> None:
        if self.stream is not None:
            self.stream.write("\r" + " " * 40 + "\r")
            self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
