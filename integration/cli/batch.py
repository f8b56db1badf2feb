"""`mde-enrich playbook run FILE --alerts DIR|--pull alerts --out DIR`: a scheduled batch.

What an operator running it from cron, a systemd timer or a CronJob sees:

* stdout: the summary (JSON or a line), unless `--quiet`;
* stderr: one timestamped line per distinct cause of failure (`3 alert(s): auth_failed: ...`),
  write-back warnings, and what was left for the next run; `--quiet` keeps only these;
* `--log-file FILE`: the same and every alert's own report, timestamped, appended;
* the exit status: 0 (also when `--deadline` left alerts for the next run), 2, 3, 4 as for
  lookups, 75 when another run of the same batch is in progress.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from integration.cli.options import output_format
from integration.errors import InvalidInput, PluginError

PROG = "mde-enrich playbook"
_RUN_LOGGER = "mde_enrich.run"


class _UtcFormatter(logging.Formatter):
    """ISO 8601 in UTC: a log read on another machine, or by journald, says when."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))


@contextlib.contextmanager
def run_log(*, log_file: str | None, verbose: bool) -> Iterator[logging.Logger]:
    """The run's logger: warnings and errors on stderr (also with --quiet, which silences
    only the summary on stdout), everything in `log_file`."""
    log = logging.getLogger(_RUN_LOGGER)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    formatter = _UtcFormatter("%(asctime)s mde-enrich: %(message)s")
    handlers: list[logging.Handler] = []
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING)
    handlers.append(stderr)
    if log_file:
        try:
            file = logging.FileHandler(log_file, encoding="utf-8", delay=False)
        except OSError as exc:
            raise InvalidInput(f"--log-file {log_file}: cannot be opened: "
                               f"{exc.strerror}") from None
        file.setLevel(logging.DEBUG)
        handlers.append(file)
        if verbose:  # each request's log line goes to the file too
            logging.getLogger("mde_enrich").addHandler(file)
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    try:
        yield log
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            logging.getLogger("mde_enrich").removeHandler(handler)
            handler.close()


def run_batch(playbook: Any, inputs: dict[str, Any], config: dict[str, Any] | None,
              args: argparse.Namespace) -> int:
    from integration.playbook.batch import BatchSummary

    with run_log(log_file=args.log_file, verbose=args.verbose) as log:
        log.info("%s: %s started (%s)", playbook.name, "pull of Graph " + args.pull
                 if args.pull else f"batch over {args.alerts}", f"out {args.out}")
        try:
            summary = _batch(playbook, inputs, config, args, log)
        except PluginError as error:
            log.error("%s: %s", error.code, error.message)
            summary = BatchSummary(out_dir=str(args.out), exit_status=error.exit_status)
            summary.add_error(error.code, error.message)
            _print(summary, args)
            return error.exit_status
        for cause in summary.errors:
            log.error("%d alert(s): %s: %s", cause["count"], cause["code"], cause["message"])
        for warning in summary.warnings:
            log.warning("warning: %s", warning)
        if summary.left:
            log.warning("%d alert(s) left for the next run: the --deadline was reached",
                        summary.left)
        log.info("%s", summary.describe())
        _print(summary, args)
        return int(summary.exit_status)


def _print(summary: Any, args: argparse.Namespace) -> None:
    if args.quiet:
        return
    if output_format(args) == "json":
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(summary.describe())


def _batch(playbook: Any, inputs: dict[str, Any], config: dict[str, Any] | None,
           args: argparse.Namespace, log: logging.Logger) -> Any:
    from integration.compose import enricher_for
    from integration.playbook import Batch, PlaybookRunner

    spec = _pull_spec(args) if args.pull else None
    out_dir = Path(args.out)
    enricher = enricher_for(config)  # the batch keeps its progress in the state store
    identity = batch_identity(args.playbook, inputs, enricher)
    deadline = time.monotonic() + args.deadline if args.deadline else None
    source: Path | str = spec.source if spec is not None else Path(args.alerts)
    with Batch(enricher.store, source=source, out_dir=out_dir, identity=identity) as batch:
        runner = PlaybookRunner(playbook, lookup_service(config, batch.memo, enricher),
                                inputs=inputs)
        try:
            if spec is None:
                return batch.run(runner, progress=sys.stderr, report=log.info,
                                 deadline=deadline)
            return _pull_batch(batch, runner, spec, enricher, out_dir, deadline, log)
        finally:
            runner.lookups.close()


def lookup_service(config: dict[str, Any] | None, memo: Any = None, enricher: Any = None,
                   priority: Any = "batch") -> Any:
    """The playbook's action steps: one alert's (playbook.py) or a batch's, with its memo."""
    from integration.compose import enricher_for
    from integration.playbook import LookupService

    # Built on first need: a malformed alert is refused before the configuration matters.
    return LookupService(lambda: enricher or enricher_for(config), memo=memo, config=config,
                         priority=priority)


def batch_identity(playbook: str, inputs: dict[str, Any], enricher: Any) -> dict[str, str]:
    """What makes two runs the same batch (with its source and output folder): the
    playbook's text, the tenant and app, the inputs."""
    from integration.resources import playbook_file

    digest = hashlib.sha256(playbook_file(playbook).read_bytes()).hexdigest()
    return {"playbook": digest, "tenant": enricher.settings.identity,
            "inputs": json.dumps(inputs, sort_keys=True)}


def _pull_batch(batch: Any, runner: Any, spec: Any, enricher: Any, out_dir: Path,
                deadline: float | None, log: logging.Logger) -> Any:
    from integration.playbook.pull import Position, WriteBack, advance, finished, pull

    client = enricher.security
    position = Position.load(enricher.store, batch.namespace)
    pulled = pull(client, spec, position)
    log.info("pulled %d %s updated since %s", len(pulled), spec.kind,
             position.time or spec.first_since)
    by_name = {entry.item.name: entry for entry in pulled}
    done: set[str] = set()
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)

    write_back = WriteBack(client, spec.kind, enricher.store, batch.namespace, out_dir, warn) \
        if spec.write_back else None

    def on_outcome(item: Any, outcome: Any) -> None:
        entry = by_name[item.name]
        if finished(outcome):
            done.add(entry.id)
        log.info("%s: %s", item.label, "already done" if outcome is None
                 else type(outcome).__name__.lower())
        if write_back is not None:
            write_back(entry, outcome)

    summary = batch.run(runner, items=[entry.item for entry in pulled], report=log.info,
                        on_outcome=on_outcome, deadline=deadline)
    # Only now, every output durable: the position moves past what is finished.
    advance(position, pulled, done).save(enricher.store, batch.namespace)
    summary.warnings.extend(warnings)
    if write_back is not None:
        log.info("write-back: %d comment(s) written", write_back.written)
    return summary


def _pull_spec(args: argparse.Namespace) -> Any:
    from integration.playbook.pull import PullSpec

    return PullSpec.from_options(args.pull, service_sources=args.service_source,
                                 severities=args.severity, statuses=args.status,
                                 since=args.since, write_back=args.write_back)
