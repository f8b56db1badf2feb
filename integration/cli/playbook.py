"""`mde-enrich playbook run|validate`: playbooks from the command line.

    mde-enrich playbook run FILE --alert FILE|-                  one alert, printed enriched
    mde-enrich playbook run FILE --alerts DIR|FILE.ndjson --out DIR    a durable batch
    mde-enrich playbook run FILE --pull alerts|incidents --out DIR     a batch pulled from Graph
    mde-enrich playbook run FILE --indicator VALUE --type domain|file  a manual playbook
    mde-enrich playbook validate FILE...

Exit status: 0 ok (alerts left for the next run by --deadline included), 2 a malformed
playbook, alert, input or option, 75 another run of the same batch is in progress, else the
highest status of the lookups (3 authentication or permission, 4 upstream, throttling,
timeout, network).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from integration.cli.options import command, output_format, reporting_errors, subcommand_usage
from integration.errors import EXIT_OK, InvalidInput

PROG = "mde-enrich playbook"


def add_command(commands: Any) -> None:
    sub = command(commands, "playbook", subcommand_usage, help="run or validate a playbook",
                  description="Run playbooks on alerts, or check them.")
    steps = sub.add_subparsers(title="subcommands", metavar="SUBCOMMAND",
                               prog="mde-enrich playbook")  # no formatter: see command.py
    run = command(steps, "run", reporting_errors(PROG, _run), help="run a playbook",
                  description="Run a playbook on an alert (or a page, array or NDJSON of "
                              "alerts), a batch of alerts, or an analyst's inputs. FILE is a "
                              "path or the name of a playbook the plugin ships "
                              "(enrich-alert, analyst-lookup, scheduled-enrichment).")
    run.set_defaults(ocsf_allowed=True, ndjson_allowed=True)
    run.add_argument("playbook", metavar="FILE", help="the playbook (YAML)")
    run.add_argument("--alert", metavar="FILE", help="alerts as JSON or NDJSON; - reads stdin; "
                                                     "sample:NAME a shipped sample "
                                                     "(`mde-enrich samples` lists them)")
    run.add_argument("--alerts", metavar="DIR|FILE",
                     help="a directory of *.json alerts or an NDJSON file: a durable batch")
    run.add_argument("--out", metavar="DIR", help="where a batch writes its enriched alerts "
                                                  "(failed ones in DIR/failed, malformed ones "
                                                  "in DIR/quarantine)")
    run.add_argument("--pull", choices=("alerts", "incidents"),
                     help="a batch of the alerts (or incidents, with their alerts) updated in "
                          "Microsoft Graph since the last run")
    run.add_argument("--service-source", action="append", default=[], metavar="NAME",
                     help="--pull only these sources, e.g. microsoftDefenderForEndpoint "
                          "(repeatable, or comma-separated)")
    run.add_argument("--severity", action="append", default=[], metavar="LEVEL",
                     help="--pull only these severities (informational, low, medium, high)")
    run.add_argument("--status", action="append", default=[], metavar="STATUS",
                     help="--pull only these statuses (new, inProgress, resolved)")
    run.add_argument("--since", metavar="AGE|TIME", default="24h",
                     help="the first --pull starts this far back (24h, 7d) or at this time; "
                          "later runs go on from where the last one finished (default 24h)")
    run.add_argument("--write-back", action="store_true",
                     help="comment each enriched alert (or incident) in Graph, once")
    run.add_argument("--deadline", metavar="DURATION", type=_duration,
                     help="a batch waits for the rate budget up to this long (90s, 10m, 1h) "
                          "and leaves what it did not reach for the next run")
    run.add_argument("--log-file", metavar="FILE",
                     help="append the batch's log (timestamped) to FILE")
    run.add_argument("--quiet", "-q", action="store_true",
                     help="print no summary; only what failed goes to stderr (for cron)")
    run.add_argument("--indicator", metavar="VALUE", help="a manual playbook's indicator")
    run.add_argument("--type", choices=("domain", "file"), help="what --indicator is")
    run.add_argument("--input", action="append", default=[], metavar="KEY=VALUE",
                     help="a playbook input (repeatable); JSON for numbers, lists, objects")
    run.add_argument("--pretty", action="store_true",
                     help="indent JSON output (the default on a terminal; else compact)")
    validate = command(steps, "validate", _validate_command, help="check playbooks",
                       description="Load playbooks and report what is wrong with them; "
                                   "nothing is run.")
    validate.add_argument("playbooks", nargs="+", metavar="FILE")


def _run(args: argparse.Namespace) -> int:
    from integration.playbook import PlaybookRunner, load_playbook

    playbook = load_playbook(args.playbook)
    inputs = _inputs(playbook, args)
    playbook.resolve_inputs(inputs)  # refused now, not once per alert
    _check_mode(playbook, args)
    config = _config(args.config)
    if args.alerts or args.pull:
        from integration.cli.batch import run_batch

        return run_batch(playbook, inputs, config, args)
    # A manual playbook has an analyst waiting: the interactive lane of the rate budget.
    lane = "interactive" if playbook.trigger == "manual" else "batch"
    from integration.cli.batch import lookup_service

    runner = PlaybookRunner(playbook, lookup_service(config, priority=lane), inputs=inputs)
    fmt = output_format(args)
    pretty = args.pretty or sys.stdout.isatty()
    try:
        if not playbook.reads_alert and not args.alert:  # manual, or a sweep over feeds
            result = runner.run(source=args.playbook)
            print(_render(result, fmt, playbook.name, pretty))
            return result.exit_status
        return _run_alerts(runner, args.alert, fmt, playbook.name, pretty)
    finally:
        runner.lookups.close()


def _run_alerts(runner: Any, path: str | None, fmt: str, name: str, pretty: bool) -> int:
    """One alert, printed enriched; or a page, array or NDJSON of them, read and written as
    a stream (memory stays at the alerts in flight), enriched up to 2 x max_concurrency at
    once, printed in input order. One that cannot be enriched is reported (and kept in its
    place, with the error as its enrichment) and the others still are."""
    from integration.playbook import AlertError
    from integration.playbook.outcome import Enriched, Failed, enrich_item, in_order
    from integration.playbook.stream import read_stream
    from integration.resources import SAMPLE_PREFIX, sample_alert

    label = "<stdin>" if path in (None, "-") else str(path)
    opened: Any
    try:
        if label.startswith(SAMPLE_PREFIX):  # a sample the plugin ships, wherever installed
            opened = sample_alert(label).open("rb")
        else:
            opened = contextlib.nullcontext(sys.stdin.buffer) if label == "<stdin>" \
                else Path(str(path)).open("rb")  # noqa: SIM115 (closed by the `with` below)
    except OSError as exc:
        raise AlertError(f"{label}: cannot be read: {exc.strerror}") from None
    with opened as stream:
        items = read_stream(stream, label)
        first = next(items, None)
        if first is None:
            raise AlertError(f"{label}: holds no alert")
        if first.shape is None:  # one alert: refused as a whole when it cannot be enriched
            if first.problem is not None:
                raise AlertError(f"{label}: {first.problem}")
            result = runner.run(first.alert, source=label)
            print(_render(result, fmt, name, pretty))
            return int(result.exit_status)
        out = _ListWriter(fmt, pretty)
        status = EXIT_OK
        if first.empty:
            out.close(label)
            return status
        window = 2 * runner.lookups.in_flight
        for item, outcome in in_order(
                _chain(first, items),
                lambda item: (item, enrich_item(runner, item.label, item.alert, item.problem)),
                window):
            status = max(status, outcome.exit_status)
            if isinstance(outcome, Enriched):
                out.document(outcome.result.document,
                             lambda r=outcome.result, at=item.label: f"{at}\n"
                             f"{_render(r, fmt, name, pretty)}")
                continue
            code = outcome.error.code if isinstance(outcome, Failed) else "invalid_input"
            message = outcome.error.message if isinstance(outcome, Failed) else outcome.reason
            print(f"{PROG}: {code}: {message}", file=sys.stderr)
            failed = {"error": {"code": code, "message": message}}
            alert = item.alert
            out.document({**alert, "enrichment": failed} if isinstance(alert, dict)
                         else {"alert": alert, "enrichment": failed},
                         lambda at=item.label, text=message: f"{at}: {text}")
        out.close(label)
    return status


def _duration(text: str) -> float:
    """90, 90s, 10m, 1h: seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (90s, 10m, 1h)") from None
    if not 0 < seconds <= 7 * 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration between 1 s and 7 days")
    return seconds


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


class _ListWriter:
    """Enriched alerts written as they come: a JSON array (closed at the end), NDJSON (one
    compact alert a line), or text blocks for people; nothing is held back."""

    def __init__(self, fmt: str, pretty: bool) -> None:
        self.fmt, self.pretty, self.count = fmt, pretty, 0

    def document(self, document: dict[str, Any], text: Any) -> None:
        out = sys.stdout
        if self.fmt == "ndjson":
            out.write(_json(document, pretty=False) + "\n")
        elif self.fmt == "json":
            out.write(("[\n" if self.count == 0 else ",\n") + _json(document, self.pretty))
        else:
            out.write(("" if self.count == 0 else "\n\n") + text())
        self.count += 1
        out.flush()

    def close(self, label: str) -> None:
        if self.fmt == "json":
            sys.stdout.write("]\n" if self.count else "[]\n")
        elif self.fmt != "ndjson":
            sys.stdout.write("\n" if self.count else f"{label}: no alerts\n")
        sys.stdout.flush()


def _json(document: Any, pretty: bool) -> str:
    if pretty:
        return json.dumps(document, indent=2, ensure_ascii=False)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _check_mode(playbook: Any, args: argparse.Namespace) -> None:
    trigger = playbook.trigger
    batch = args.alerts or args.pull
    if args.out and not batch:
        raise InvalidInput("--out goes with --alerts or --pull (a batch)")
    if args.alerts and args.pull:
        raise InvalidInput("give --alerts (a folder or file) or --pull (from Graph), not both")
    if batch and args.alert:
        raise InvalidInput("give --alert (one alert) or a batch (--alerts, --pull), not both")
    pull_only = [name for name, value in (("--service-source", args.service_source),
                                          ("--severity", args.severity),
                                          ("--status", args.status),
                                          ("--write-back", args.write_back)) if value]
    if pull_only and not args.pull:
        raise InvalidInput(f"{', '.join(pull_only)} go(es) with --pull")
    batch_only = [name for name, value in (("--deadline", args.deadline),
                                           ("--log-file", args.log_file),
                                           ("--quiet", args.quiet)) if value]
    if batch_only and not batch:
        raise InvalidInput(f"{', '.join(batch_only)} go(es) with a batch (--alerts, --pull)")
    if trigger == "manual":
        if args.alert or args.alerts:
            raise InvalidInput("a manual playbook takes inputs (--indicator, --type, --input), "
                               "not alerts")
        return
    if args.indicator or args.type:
        raise InvalidInput(f"--indicator and --type are for manual playbooks; this one is "
                           f"triggered by {'an alert' if trigger == 'alert' else 'a schedule'}")
    if batch and not args.out:
        raise InvalidInput(f"{'--alerts' if args.alerts else '--pull'} needs --out DIR for "
                           "the enriched alerts")
    if not (args.alert or batch) and playbook.reads_alert:
        raise InvalidInput("give --alert FILE (or - for stdin), or --alerts DIR|FILE.ndjson "
                           "--out DIR")


def _inputs(playbook: Any, args: argparse.Namespace) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for name, value in (("indicator", args.indicator), ("type", args.type)):
        if value is not None:
            given[name] = value
    for pair in args.input:
        name, equals, text = pair.partition("=")
        if not equals or not name:
            raise InvalidInput(f"--input {pair!r}: expected KEY=VALUE")
        spec = playbook.inputs.get(name)
        if spec is None:
            raise InvalidInput(f"{playbook.source}: unknown input {name!r}; this playbook "
                               f"takes: {', '.join(playbook.inputs) or 'none'}")
        try:
            given[name] = spec.coerce(text)
        except ValueError as exc:
            raise InvalidInput(f"--input {name}: {exc}") from exc
    return given


def _config(path: str | None) -> dict[str, Any] | None:
    from integration.config import read_config_file

    return read_config_file(path) if path else None




# --- output --------------------------------------------------------------------------------


def _render(result: Any, fmt: str, name: str, pretty: bool = True) -> str:
    from integration.playbook.steps import (
        also_given,
        file_names,
        note_markdown,
        one_per_file,
        summary_line,
        warning_texts,
        with_file_name,
    )
    from integration.render import printable, table_block, terminal_safe

    enrichment = result.enrichment
    report = enrichment.get("sweep")
    if fmt in ("table", "markdown") and isinstance(report, dict) and "hits" in report:
        from integration.sweep.render import render_markdown, render_table

        text = render_markdown(report) if fmt == "markdown" else render_table(report)
        return "\n".join([text, *_details(enrichment)])
    if fmt in ("json", "ndjson"):
        return _json(result.document, pretty and fmt == "json")
    if fmt == "ocsf":
        from integration.ocsf import render_run

        return _json(render_run(result, name), pretty)
    if fmt == "markdown":
        if isinstance(enrichment.get("note"), str):
            return str(enrichment["note"])
        return note_markdown(result.envelopes, title=f"Enrichment ({name})",
                             summary=enrichment.get("summary"),
                             indicators=enrichment.get("indicators"),
                             warnings=enrichment.get("warnings"), details=_details(enrichment))
    lines = [f"playbook {name}"]
    summary = enrichment.get("summary")
    if isinstance(summary, dict) and "total_machines" in summary:
        lines.append(summary_line(summary, printable).replace("**", ""))
    lines += map(printable, _details(enrichment))
    lines += [f"warning: {printable(text)}" for text in warning_texts(enrichment.get("warnings"))]
    names = file_names(enrichment.get("indicators"))
    blocks = [also_given(with_file_name(table_block(envelope), envelope, names, printable),
                         others, printable)
              for envelope, others in one_per_file(result.envelopes)]
    return terminal_safe("\n\n".join(["\n".join(lines), *blocks]))


def _details(enrichment: dict[str, Any]) -> list[str]:
    """What was skipped and the recommendation: said in tables and case notes alike."""
    from integration.playbook.steps import format_line

    said = format_line(enrichment.get("format"))
    details = [said] if said else []
    summary = enrichment.get("summary")
    skipped = summary.get("skipped") if isinstance(summary, dict) else None
    if skipped:
        details.append("skipped: " + ", ".join(f"{count} {reason}"
                                               for reason, count in skipped.items()))
    severity = enrichment.get("recommended_severity")
    if isinstance(severity, dict):
        details.append(f"recommended severity: {severity.get('severity')} "
                       f"({severity.get('reason')})")
    return details


# --- validate ------------------------------------------------------------------------------


def _validate_command(args: argparse.Namespace) -> int:
    from integration.playbook import PlaybookError, load_playbook

    status, report = EXIT_OK, []
    for path in args.playbooks:
        try:
            playbook = load_playbook(path)
        except PlaybookError as error:
            status = max(status, error.exit_status)
            report.append({"file": path, "valid": False, "error": error.message})
            if output_format(args) != "json":
                print(f"{PROG}: {error.code}: {error.message}", file=sys.stderr)
            continue
        report.append({"file": path, "valid": True, "name": playbook.name,
                       "trigger": playbook.trigger, "steps": len(playbook.steps)})
        if output_format(args) != "json":
            print(f"{path}: ok ({playbook.trigger} playbook {playbook.name!r}, "
                  f"{len(playbook.steps)} steps)")
    if output_format(args) == "json":
        print(json.dumps(report, indent=2))
    return status

