"""`mde-enrich worker`: one worker of a fleet sharing an alert stream through Redis, or, with
--enqueue, the producer that adds alerts to it.

    mde-enrich worker --config fleet.yaml --out /srv/enriched        consume, enrich, write
    mde-enrich worker --config fleet.yaml --enqueue alerts.ndjson     add alerts to the stream

Exit status: 0 when stopped (SIGTERM, Ctrl-C exits 130) or idle for --exit-when-idle; 2 for a
configuration that cannot work (no Redis state, nowhere to write) or an unreadable alert
given to --enqueue.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integration.cli.options import command, output_format, reporting_errors
from integration.errors import EXIT_INPUT, EXIT_OK, InvalidInput

if TYPE_CHECKING:
    from integration.lookup.service import Enricher

PROG = "mde-enrich worker"


def add_command(commands: object) -> None:
    from integration.playbook.worker import GROUP, OUTPUT_STREAM, STREAM

    sub = command(commands, "worker", reporting_errors(PROG, _run),
                  help="enrich alerts from a Redis Stream, one worker of a fleet",
                  description="Consume alerts from a Redis Stream with a consumer group: each "
                              "alert is enriched once across every worker sharing the "
                              "configuration's Redis state (token, cache and rate budget "
                              "included), acknowledged once its output is durable; alerts of "
                              "a worker that died are claimed after --claim-idle seconds. "
                              "--enqueue adds alerts to the stream instead.")
    sub.add_argument("--enqueue", metavar="FILE|DIR",
                     help="add the alerts of a file (JSON, page, array, NDJSON) or a directory "
                          "of *.json to the stream, and exit")
    sub.add_argument("--playbook", default="enrich-alert", metavar="FILE",
                     help="the alert playbook (default: enrich-alert, shipped)")
    sub.add_argument("--stream", default=STREAM, help=f"the alert stream (default: {STREAM})")
    sub.add_argument("--group", default=GROUP, help=f"the consumer group (default: {GROUP})")
    sub.add_argument("--name", help="this worker's consumer name (default: host:pid)")
    sub.add_argument("--out", metavar="DIR", help="write each enriched alert to DIR/DIGEST.json")
    sub.add_argument("--output-stream", default=OUTPUT_STREAM, metavar="NAME",
                     help=f"add each enriched alert to this stream (default: {OUTPUT_STREAM}; "
                          "'' for none)")
    sub.add_argument("--claim-idle", type=float, default=60.0, metavar="SECONDS",
                     help="claim another worker's alert pending this long (default: 60)")
    sub.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                     help="exit once nothing was new or pending for this long (cron, tests)")


def _run(args: argparse.Namespace) -> int:
    from integration.compose import enricher_for
    from integration.config import read_config_file
    from integration.playbook.worker import enqueue, streams_of

    config = read_config_file(args.config) if args.config else None
    enricher = enricher_for(config)
    streams = streams_of(enricher.store)
    if args.enqueue:
        added, unreadable = enqueue(streams, Path(args.enqueue), stream=args.stream,
                                    report=lambda text: print(f"{PROG}: {text}",
                                                              file=sys.stderr))
        report = {"stream": args.stream, "added": added, "unreadable": unreadable}
        _say(args, report, f"{added} alert(s) added to {args.stream}"
                           + (f", {unreadable} unreadable" if unreadable else ""))
        return EXIT_INPUT if unreadable else EXIT_OK
    return _work(args, enricher, streams, config)


def _work(args: argparse.Namespace, enricher: Enricher, streams: Any,
          config: dict[str, Any] | None) -> int:
    from integration.playbook import LookupService, PlaybookRunner, load_playbook
    from integration.playbook.worker import Worker, stop_on_signals

    playbook = load_playbook(args.playbook)
    if playbook.trigger == "manual":
        raise InvalidInput(f"{args.playbook}: a manual playbook takes an analyst's inputs; a "
                           "worker runs a playbook triggered by alerts (enrich-alert)")
    runner = PlaybookRunner(playbook, LookupService(lambda: enricher, config=config))
    worker = Worker(streams, runner, stream=args.stream, group=args.group, consumer=args.name,
                    out_dir=Path(args.out) if args.out else None,
                    output_stream=args.output_stream or None, claim_idle_s=args.claim_idle)
    stop_on_signals(worker)
    try:
        summary = worker.run(exit_when_idle_s=args.exit_when_idle)
    finally:
        runner.lookups.close()
    _say(args, summary.to_dict(), f"{summary.enriched} enriched, {summary.duplicates} already "
                                  f"done, {summary.quarantined} quarantined, {summary.retried} "
                                  f"left to retry, {summary.claimed} claimed")
    return EXIT_OK


def _say(args: argparse.Namespace, report: dict[str, Any], text: str) -> None:
    if output_format(args) == "json":
        print(json.dumps(report, indent=2))
    else:
        print(text)
