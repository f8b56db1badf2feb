"""`mde-enrich formats list|test`: the alert formats a run would use, and how one alert is read.

    mde-enrich formats list [--config FILE]          every format, the user's (alert_formats) first
    mde-enrich formats test ALERT [--config FILE]    which format matched (and which others did),
                                                     what each field gave, what was skipped and why
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from integration.cli.options import command, output_format, subcommand_usage
from integration.errors import EXIT_OK, PluginError

PROG = "mde-enrich formats"


def add_command(commands: Any) -> None:
    sub = command(commands, "formats", subcommand_usage,
                  help="list alert formats, or test one alert",
                  description="The alert formats playbooks detect (the shipped ones, and the "
                              "file the `alert_formats` configuration names, tried first).")
    steps = sub.add_subparsers(title="subcommands", metavar="SUBCOMMAND", prog=PROG)
    command(steps, "list", _list_command, help="list the formats, best first",
            description="Every alert format with its id, title, origin and specificity.")
    test = command(steps, "test", _test_command, help="explain how an alert is read",
                   description="Detect ALERT's format and extract its indicators, saying "
                               "which rule matched, what each field gave, what was skipped "
                               "and why. Nothing is looked up.")
    test.add_argument("alert", metavar="ALERT", help="an alert as JSON or NDJSON; - reads stdin")


def _formats(args: argparse.Namespace) -> Any:
    from integration.config import alert_options, read_config_file
    from integration.playbook.alerts import formats_for

    config = read_config_file(args.config) if getattr(args, "config", None) else None
    user_path, suffixes = alert_options(config)
    return formats_for(user_path), suffixes


def _list_command(args: argparse.Namespace) -> int:
    try:
        formats, _ = _formats(args)
    except PluginError as error:
        print(f"{PROG}: {error.message}", file=sys.stderr)
        return error.exit_status
    rows = [{**known.describe(), "specificity": known.specificity} for known in formats.formats]
    if output_format(args) == "json":
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for row in rows:
        print(f"{row['id']:30} {row['specificity']:>2}  {row['title']}  [{row['origin']}]")
    print(f"{'generic':30}  -  Unknown format (read by field names), when none matches")
    return EXIT_OK


def _test_command(args: argparse.Namespace) -> int:
    from integration.playbook.alerts import ExtractPolicy

    try:
        formats, suffixes = _formats(args)
        policy = ExtractPolicy(internal_suffixes=suffixes)
        reports = [{"alert": label, **formats.extract(alert, label, policy=policy),
                    "also_matched": [f.id for f in formats.matching(alert)[1:]]}
                   for label, alert in _alerts(args.alert)]
    except PluginError as error:
        print(f"{PROG}: {error.message}", file=sys.stderr)
        return error.exit_status
    if output_format(args) == "json":
        print(json.dumps(reports, indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(_describe(report) for report in reports))
    return EXIT_OK


def _alerts(path: str) -> list[tuple[str, Any]]:
    """The alerts of a file (or stdin), read as `playbook run --alert` reads them: bounded,
    one alert, a page, an array or NDJSON. An unreadable one is refused, naming where."""
    import contextlib

    from integration.playbook.errors import AlertError
    from integration.playbook.stream import read_stream

    label = "<stdin>" if path == "-" else path
    try:
        opened = contextlib.nullcontext(sys.stdin.buffer) if label == "<stdin>" \
            else open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise AlertError(f"{label}: cannot be read: {exc.strerror}") from None
    found = []
    with opened as stream:
        for item in read_stream(stream, label):
            if item.empty:
                continue
            if item.problem:
                raise AlertError(f"{item.label}: {item.problem}")
            if not isinstance(item.alert, dict):
                raise AlertError(f"{item.label}: an alert is a JSON object")
            found.append((item.label, item.alert))
    if not found:
        raise AlertError(f"{label}: holds no alert")
    return found


def _describe(report: dict[str, Any]) -> str:
    found = report["format"]
    lines = [f"{report['alert']}: format {found['id']} ({found['title']}, {found['origin']})"]
    if report["also_matched"]:
        lines.append(f"  also matched, less specific: {', '.join(report['also_matched'])}")
    for item in report["indicators"]:
        where = item["sources"][0]
        lines.append(f"  lookup {item['type']:6} {item['value']}  <- {where['format']}: "
                     f"{where['field']}")
    for item in report["skipped"]:
        where = item["source"]
        why = f" ({item['message']})" if item.get("message") else ""
        lines.append(f"  skip   {item['reason']}: {item['value']}  <- {where['format']}: "
                     f"{where['field']}{why}")
    lines += [f"  warning {w['code']}: {w['message']}" for w in report["warnings"]]
    return "\n".join(lines)
