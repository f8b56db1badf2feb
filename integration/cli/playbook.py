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
import json
import sys
from typing import Any

from integration.cli.options import command, output_format
from integration.errors import EXIT_INPUT, EXIT_OK, InvalidInput, PluginError

PROG = "mde-enrich playbook"


def add_command(commands: Any) -> None:
    sub = command(commands, "playbook", _usage, help="run or validate a playbook",
                  description="Run playbooks on alerts, or check them.")
    steps = sub.add_subparsers(title="subcommands", metavar="SUBCOMMAND",
                               prog="mde-enrich playbook")  # no formatter: see command.py
    run = command(steps, "run", _run_command, help="run a playbook",
                  description="Run a playbook on an alert (or a page, array or NDJSON of "
                              "alerts), a batch of alerts, or an analyst's inputs. FILE is a "
                              "path or the name of a playbook the plugin ships "
                              "(enrich-alert, analyst-lookup, scheduled-enrichment).")
    run.set_defaults(ocsf_allowed=True)
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
    validate = command(steps, "validate", _validate_command, help="check playbooks",
                       description="Load playbooks and report what is wrong with them; "
                                   "nothing is run.")
    validate.add_argument("playbooks", nargs="+", metavar="FILE")


def _usage(args: argparse.Namespace) -> int:
    args.subparser.print_help(sys.stderr)
    return EXIT_INPUT


def _run_command(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except PluginError as error:
        print(f"{PROG}: {error.code}: {error.message}", file=sys.stderr)
        return error.exit_status


def _run(args: argparse.Namespace) -> int:
    from integration.playbook import PlaybookRunner, load_playbook

    playbook = load_playbook(args.playbook)
    inputs = _inputs(playbook, args)
    playbook.resolve_inputs(inputs)  # refused now, not once per alert
    _check_mode(playbook.trigger, args)
    config = _config(args.config)
    if args.alerts or args.pull:
        from integration.cli.batch import run_batch

        return run_batch(playbook, inputs, config, args)
    # A manual playbook has an analyst waiting: the interactive lane of the rate budget.
    lane = "interactive" if playbook.trigger == "manual" else "batch"
    from integration.cli.batch import lookup_service

    runner = PlaybookRunner(playbook, lookup_service(config, priority=lane), inputs=inputs)
    if playbook.trigger == "manual":
        result = runner.run(source=args.playbook)
    else:
        batch, label = _read_alert(args.alert)
        if batch.shape is not None:  # a page, an array or NDJSON: each alert on its own
            return _run_alert_list(runner, batch.alerts, label, output_format(args),
                                   playbook.name)
        result = runner.run(batch.alerts[0], source=label)
    print(_render(result, output_format(args), playbook.name))
    return result.exit_status


def _run_alert_list(runner: Any, alerts: list[Any], label: str, fmt: str, name: str) -> int:
    """Enrich each alert of a list in order; one that cannot be enriched is reported (and
    kept in its place, with the error as its enrichment) and the others still are."""
    from integration.playbook import AlertError

    status, documents, texts = EXIT_OK, [], []
    for number, alert in enumerate(alerts, 1):
        source = f"{label} item {number}"
        try:
            result = runner.run(alert, source=source)
        except AlertError as error:
            print(f"{PROG}: {error.code}: {error.message}", file=sys.stderr)
            status = max(status, error.exit_status)
            failed = {"error": {"code": error.code, "message": error.message}}
            documents.append({**alert, "enrichment": failed} if isinstance(alert, dict)
                             else {"alert": alert, "enrichment": failed})
            texts.append(f"{source}: {error.message}")
            continue
        status = max(status, result.exit_status)
        documents.append(result.document)
        texts.append(f"{source}\n{_render(result, fmt, name)}")
    if fmt == "json":
        print(json.dumps(documents, indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(texts) if texts else f"{label}: no alerts")
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


def _check_mode(trigger: str, args: argparse.Namespace) -> None:
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
    if not (args.alert or batch):
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
            raise InvalidInput(f"--input {name}: {exc}") from None
    return given


def _config(path: str | None) -> dict[str, Any] | None:
    from integration.config import read_config_file

    return read_config_file(path) if path else None


def _read_alert(path: str | None) -> tuple[Any, str]:
    """The alerts given (an AlertBatch: one alert, or a page, array or NDJSON of them)."""
    from integration.bounded import ALERT, read_capped
    from integration.playbook import AlertError
    from integration.playbook.alerts import read_alerts
    from integration.resources import SAMPLE_PREFIX, sample_alert

    label = "<stdin>" if path in (None, "-") else str(path)
    source: Any = path or "-"
    if label.startswith(SAMPLE_PREFIX):  # a sample the plugin ships, wherever it is installed
        source = sample_alert(label)
    data = read_capped(source, ALERT.max_bytes, what=label, error=AlertError)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AlertError(f"{label}: is not UTF-8 text") from None
    return read_alerts(text, label), label


# --- output --------------------------------------------------------------------------------


def _render(result: Any, fmt: str, name: str) -> str:
    from integration.playbook.steps import (
        also_given,
        file_names,
        note_markdown,
        one_per_file,
        summary_line,
        warning_texts,
        with_file_name,
    )
    from integration.render import table_block

    enrichment = result.enrichment
    if fmt == "json":
        return json.dumps(result.document, indent=2, ensure_ascii=False)
    if fmt == "ocsf":
        from integration.ocsf import render_run

        return json.dumps(render_run(result, name), indent=2, ensure_ascii=False)
    if fmt == "markdown":
        if isinstance(enrichment.get("note"), str):
            return enrichment["note"]
        return note_markdown(result.envelopes, title=f"Enrichment ({name})",
                             summary=enrichment.get("summary"),
                             indicators=enrichment.get("indicators"),
                             warnings=enrichment.get("warnings"), details=_details(enrichment))
    lines = [f"playbook {name}"]
    summary = enrichment.get("summary")
    if isinstance(summary, dict) and "total_machines" in summary:
        lines.append(summary_line(summary).replace("**", ""))
    lines += _details(enrichment)
    lines += [f"warning: {text}" for text in warning_texts(enrichment.get("warnings"))]
    names = file_names(enrichment.get("indicators"))
    blocks = [also_given(with_file_name(table_block(envelope), envelope, names), others)
              for envelope, others in one_per_file(result.envelopes)]
    return "\n\n".join(["\n".join(lines), *blocks])


def _details(enrichment: dict[str, Any]) -> list[str]:
    """What was skipped and the recommendation: said in tables and case notes alike."""
    details = []
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

