"""A fleet of workers enriching one alert stream through Redis (`mde-enrich worker`).

Producers add alerts to a Redis Stream (`XADD`, field `alert`: the alert's JSON; `mde-enrich
worker --enqueue FILE|DIR` is one). Every worker reads it through one consumer group
(`XREADGROUP`), so each alert goes to one worker, and:

* enriches it with the playbook, sharing the token, the result cache and the rate budget with
  every other worker through the same Redis (the configuration's `state`);
* makes the output durable first: a file in `--out` (written once: temporary file, fsync,
  hard link, so an existing output is never replaced) and/or an entry on the output stream;
* then, in one Lua script, marks the alert's digest done, adds the output stream entry
  (only if the digest was not done before) and acknowledges the message (`XACK`). An alert
  delivered twice, or enqueued twice, is enriched and written once;
* claims the pending alerts of a worker that died (`XAUTOCLAIM` once they have been idle for
  `claim_idle_s`), and its own alerts whose lookups failed (tried again, up to
  MAX_ATTEMPTS times; then written as they are, with the failed lookups in their envelopes);
* sets aside an entry that is not an alert on `<stream>:quarantine` with its reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integration.errors import ConfigError, InvalidInput
from integration.playbook.batch import batch_items, fsync_directory, open_temp
from integration.playbook.outcome import (
    Enriched,
    Failed,
    Outcome,
    Quarantined,
    alert_digest,
    enrich_item,
    in_order,
)

if TYPE_CHECKING:
    from integration.playbook.engine import PlaybookRunner
    from integration.state.redis import RedisStreams

STREAM = "mde-enrich:alerts"
GROUP = "mde-enrich"
OUTPUT_STREAM = "mde-enrich:enriched"
DONE_TTL_S = 30 * 86400  # an alert's digest is remembered (not enriched again) for a month
MAX_ATTEMPTS = 5  # deliveries of an alert whose lookups keep failing before it is written
ALERT_FIELD = "alert"
QUARANTINE_ECHO = 65536  # characters of a quarantined entry kept beside its reason

@dataclass
class WorkerSummary:
    enriched: int = 0  # written by this worker
    duplicates: int = 0  # already done (delivered or enqueued twice): acknowledged only
    quarantined: int = 0
    retried: int = 0  # left pending for another attempt (lookups failed)
    claimed: int = 0  # taken over from a worker that stopped answering
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items()}


@dataclass(frozen=True)
class Message:
    id: str
    fields: dict[str, str]


@dataclass(frozen=True)
class _Written:
    """An output a worker wrote but did not acknowledge before it died: finished as is."""

    digest: str
    text: str


class Worker:
    def __init__(self, streams: RedisStreams, runner: PlaybookRunner, *, stream: str = STREAM,
                 group: str = GROUP, consumer: str | None = None, out_dir: Path | None = None,
                 output_stream: str | None = OUTPUT_STREAM, claim_idle_s: float = 60.0,
                 block_s: float = 2.0) -> None:
        if out_dir is None and not output_stream:
            raise InvalidInput("a worker needs somewhere durable to put its outputs: --out "
                               "DIR and/or --output-stream NAME")
        self.streams, self.runner = streams, runner
        self.stream, self.group, self.output_stream = stream, group, output_stream or ""
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}"
        self.out_dir, self.claim_idle_s, self.block_s = out_dir, claim_idle_s, block_s
        self.summary = WorkerSummary()
        self.stopping = threading.Event()
        self._claim_cursor = "0-0"
        self._batch = 2 * runner.lookups.in_flight

    # -- the loop ------------------------------------------------------------------------

    def run(self, *, exit_when_idle_s: float | None = None) -> WorkerSummary:
        """Until stopped (SIGTERM, SIGINT), or, with `exit_when_idle_s`, until the stream
        has had nothing new for us and nothing pending for anyone for that long."""
        self.streams.ensure_group(self.stream, self.group)
        if exit_when_idle_s is not None:  # never block past the idle time asked for
            self.block_s = min(self.block_s, max(0.1, exit_when_idle_s))
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            messages = self._claim() or self._read()
            if messages:
                self._work(messages)
                idle_since = time.monotonic()
                continue
            if exit_when_idle_s is not None and not self._pending() \
                    and time.monotonic() - idle_since >= exit_when_idle_s:
                break
        return self.summary

    def _claim(self) -> list[Message]:
        """Entries idle for claim_idle_s in anyone's pending list (a dead worker's, or ours
        whose lookups failed)."""
        self._claim_cursor, entries = self.streams.claim(
            self.stream, self.group, self.consumer, min_idle_s=self.claim_idle_s,
            start=self._claim_cursor, count=self._batch)
        self.summary.claimed += len(entries)
        return [Message(i, f) for i, f in entries]

    def _read(self) -> list[Message]:
        entries = self.streams.read(self.stream, self.group, self.consumer, count=self._batch,
                                    block_s=self.block_s)
        return [Message(i, f) for i, f in entries]

    def _pending(self) -> int:
        return self.streams.pending(self.stream, self.group)

    # -- one round of messages -----------------------------------------------------------

    def _work(self, messages: list[Message]) -> None:
        from integration.playbook.lookups import LocalMemo

        # The memo dedupes within a round; across rounds the shared result cache does, so
        # a worker that runs for weeks does not grow.
        self.runner.lookups.memo = LocalMemo()
        for message, outcome in in_order(messages, lambda m: (m, self._enrich(m)),
                                         self._batch):
            self._finish_one(message, outcome)

    def _enrich(self, message: Message) -> Outcome | _Written | None:
        """On an alert thread: the outcome, an output written before (a worker died between
        writing and acknowledging), or None when the alert's digest is done."""
        import io

        from integration.playbook.stream import read_stream

        label = f"{self.stream} {message.id}"
        text = message.fields.get(ALERT_FIELD)
        if text is None:
            return Quarantined(label, f"{label}: no '{ALERT_FIELD}' field")
        items = list(read_stream(io.BytesIO(text.encode("utf-8")), label))
        if len(items) != 1 or items[0].empty:
            return Quarantined(label, f"{label}: holds {len(items)} alerts; one is expected")
        item = items[0]
        if item.problem is not None:
            return Quarantined(label, f"{label}: {item.problem}")
        digest = alert_digest(item.alert)
        if self.streams.exists(self._done_key(digest)):
            return None
        written = self._output_path(digest)
        if written is not None and written.is_file():
            return _Written(digest, written.read_text(encoding="utf-8"))
        return enrich_item(self.runner, label, item.alert, digest=digest)

    def _finish_one(self, message: Message, outcome: Outcome | _Written | None) -> None:
        label = f"{self.stream} {message.id}"
        if outcome is None:
            self._ack(message)
            self.summary.duplicates += 1
            return
        if isinstance(outcome, Quarantined):
            self._quarantine(message, outcome.reason)
            return
        if isinstance(outcome, Failed) or (isinstance(outcome, Enriched)
                                           and not outcome.complete):
            attempts = self.streams.count(self._attempts_key(message.id), DONE_TTL_S)
            if attempts < MAX_ATTEMPTS:
                self.summary.retried += 1  # left pending: claimed again once idle
                return
            if isinstance(outcome, Failed):  # it keeps failing: set aside, with the reason
                self._quarantine(message, f"{outcome.reason} (after {attempts} attempts)")
                return
            # Lookups still failing after MAX_ATTEMPTS: written as it is, the envelopes say so.
        if isinstance(outcome, _Written):
            digest, text = outcome.digest, outcome.text
        else:
            digest = outcome.digest
            text = json.dumps(outcome.result.document, ensure_ascii=False,
                              separators=(",", ":")) + "\n"
            path = self._output_path(digest)
            if path is not None:
                write_once(path, text.encode("utf-8"))
        fresh = self.streams.finish(
            stream=self.stream, group=self.group, entry_id=message.id,
            done_key=self._done_key(digest), attempts_key=self._attempts_key(message.id),
            ttl_s=DONE_TTL_S, digest=digest, output_stream=self.output_stream,
            output=text.rstrip("\n") if self.output_stream else "", source=label)
        if fresh:
            self.summary.enriched += 1
        else:
            self.summary.duplicates += 1

    def _quarantine(self, message: Message, reason: str) -> None:
        """Set aside on <stream>:quarantine (nothing is dropped silently), then acknowledged."""
        self.streams.add(f"{self.stream}:quarantine", iter([{
            "source": f"{self.stream} {message.id}", "reason": reason,
            ALERT_FIELD: message.fields.get(ALERT_FIELD, "")[:QUARANTINE_ECHO]}]))
        self._ack(message)
        self.summary.quarantined += 1
        self.summary.errors.append(reason)

    def _ack(self, message: Message) -> None:
        self.streams.ack(self.stream, self.group, message.id)

    def _output_path(self, digest: str) -> Path | None:
        return None if self.out_dir is None else self.out_dir / f"{digest}.json"

    def _done_key(self, digest: str) -> str:
        return f"{self.stream}:done:{digest}"

    def _attempts_key(self, message_id: str) -> str:
        return f"{self.stream}:attempts:{message_id}"


def write_once(path: Path, data: bytes) -> bool:
    """Write `path` whole and durably unless it exists: False when it did (never replaced)."""
    temp, fd = open_temp(path)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temp, path)  # fails when the name exists: first writer wins
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    fsync_directory(path.parent)
    return True


def enqueue(streams: RedisStreams, source: Path, *, stream: str = STREAM,
            report: Callable[[str], None] = lambda message: None) -> tuple[int, int]:
    """Add every alert of a file or directory (as `--alerts` reads them, one at a time) to
    the stream: (added, unreadable). An unreadable item is reported, not added."""
    if not (source.is_dir() or source.is_file()):
        raise InvalidInput(f"{source}: no such file or directory")
    unreadable = 0

    def entries() -> Iterator[dict[str, str]]:
        nonlocal unreadable
        for item in batch_items(source):
            if item.problem is not None:
                unreadable += 1
                report(f"invalid_input: {item.label}: {item.problem}")
                continue
            yield {ALERT_FIELD: json.dumps(item.alert, ensure_ascii=False,
                                           separators=(",", ":"))}
    added = streams.add(stream, entries())
    return added, unreadable


def streams_of(store: Any) -> RedisStreams:
    """The alert streams of a Redis state store; ConfigError for any other state."""
    streams = getattr(store, "streams", None)
    if streams is None:
        raise ConfigError("config key 'state': a worker needs the Redis state every worker "
                          "shares (state: redis://host:6379/0)")
    made: RedisStreams = streams()
    return made


def stop_on_signals(worker: Worker) -> None:
    """SIGTERM (and SIGINT): finish the round in hand, acknowledge it, stop."""
    def stop(*_: Any) -> None:
        worker.stopping.set()
    signal.signal(signal.SIGTERM, stop)

