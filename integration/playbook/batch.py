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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from integration.errors import ConfigError, InvalidInput
from integration.playbook.lookups import StoreMemo
from integration.playbook.outcome import (
    Enriched,
    Failed,
    Outcome,
    Quarantined,
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


@dataclass(frozen=True)
class BatchItem:
    name: str  # the output's file name
    label: str  # where the alert came from, for messages
    alert: Any  # None when `problem` says why it could not be read
    problem: str | None = None


@dataclass
class BatchSummary:
    total: int = 0
    enriched: int = 0  # written by this run, every lookup answered
    incomplete: int = 0  # written, but some lookups failed: done again by the next run
    failed: int = 0  # not written (a failed step, an output that could not be written)
    quarantined: int = 0  # never enrichable as given (unreadable, not an alert): set aside
    already_done: int = 0  # done by an earlier run
    lookups: int = 0  # indicators sent to Defender by this run
    memo_hits: int = 0  # indicators answered from the batch memo
    exit_status: int = 0
    out_dir: str = ""
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.total} alert(s): {self.enriched} enriched, {self.already_done} already "
                f"done, {self.incomplete} with failed lookups, {self.failed} failed, "
                f"{self.quarantined} quarantined; {self.lookups} lookup(s), {self.memo_hits} "
                f"answered from the batch memo; output in {self.out_dir}")


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

    def __init__(self, store: StateStore, *, source: Path, out_dir: Path,
                 identity: Mapping[str, str]) -> None:
        self.store, self.source, self.out_dir = store, source, out_dir
        key = json.dumps({"source": str(source.resolve()), "out": str(out_dir.resolve()),
                          **identity}, sort_keys=True)
        self.id = hashlib.sha256(key.encode()).hexdigest()[:24]
        self.namespace = f"batch:{self.id}"
        self._lease = Lease(store, self.namespace, f"{out_dir}: another run of this batch")
        self.memo: StoreMemo | None = None

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
            on_outcome: Callable[[BatchItem, Outcome], None] | None = None) -> BatchSummary:
        """Every item, up to 2 x max_concurrency alerts in flight at once (their lookups
        bounded by max_concurrency together), outputs written in input order.
        `on_outcome` sees what became of each item that was not already done."""
        if not (self.source.is_dir() or self.source.is_file()):
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
        for item, outcome in in_order(items, lambda item: (item, self._enrich(item, runner)),
                                      window):
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
        # again tomorrow over the same folder must ask Defender afresh for its new alerts.
        if self.memo is not None:
            self.memo.clear()
        return summary

    # -- one alert -----------------------------------------------------------------------

    def _enrich(self, item: BatchItem, runner: PlaybookRunner) -> Outcome | None:
        """The item's outcome, or None when an earlier run did it (on an alert thread)."""
        if item.problem is not None:
            return enrich_item(runner, item.label, None, item.problem)
        digest = alert_digest(item.alert)
        if self.store.get(self.namespace, f"done:{item.name}") == digest \
                and (self.out_dir / item.name).is_file():
            return None
        return enrich_item(runner, item.label, item.alert, digest=digest)

    def _record(self, item: BatchItem, outcome: Outcome, summary: BatchSummary,
                report: Callable[[str], None]) -> Outcome:
        """Write an enriched alert and count the outcome (in input order, one at a time)."""
        if isinstance(outcome, Enriched):
            try:
                write_atomically(self.out_dir / item.name, _json_bytes(outcome.result.document),
                                 tag=self.id[:12])
            except OSError as exc:
                outcome = Failed(item.label, ConfigError(
                    f"{item.label}: cannot write {self.out_dir / item.name}: "
                    f"{exc.strerror or exc}"), outcome.digest)
        summary.exit_status = max(summary.exit_status, outcome.exit_status)
        if isinstance(outcome, Enriched):
            if not outcome.complete:
                summary.incomplete += 1  # not marked done: its failed lookups are tried again
                return outcome
            self.store.put(self.namespace, f"done:{item.name}", outcome.digest,
                           ttl_s=STATE_TTL_S)
            summary.enriched += 1
            return outcome
        if isinstance(outcome, Failed):
            summary.failed += 1
            message = outcome.error.message
        else:
            summary.quarantined += 1
            message = outcome.reason
        summary.errors.append(message)
        report(f"{'invalid_input' if isinstance(outcome, Quarantined) else outcome.error.code}"
               f": {message}")
        return outcome

    def _claim_out_dir(self) -> None:
        """One --out belongs to one batch: a second batch over another source is refused,
        so that its outputs never mix with (or overwrite) the first one's. The claim lives
        in the state store, beside the batch's progress, as long as that progress."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out, mine = str(self.out_dir.resolve()), str(self.source.resolve())
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
