"""`mde-enrich domain|file VALUE...` and `mde-enrich run ACTION_ID --params JSON`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from integration.cli.options import command, output_format
from integration.errors import InvalidInput, PluginError, exit_status_for


def add_commands(commands: Any) -> None:
    for kind, what in (("domain", "domains"), ("file", "files (SHA-1, SHA-256 or MD5)")):
        sub = command(commands, kind, _lookup_command, help=f"machines that touched these {what}",
                      description=f"Which of our machines touched these {what}? A lone - reads "
                                  "values from standard input, one per line (blank lines and "
                                  "# comments are skipped).")
        sub.set_defaults(kind=kind)
        sub.add_argument("values", nargs="*", metavar="VALUE")
        sub.add_argument("--no-cache", action="store_true", help="bypass the result cache")
        sub.add_argument("--include-raw", action="store_true",
                         help="keep Defender's record of each machine in mde.raw")
        sub.add_argument("--contact", action="store_true",
                         help="add each machine's first and last contact, count and process "
                              "(one advanced hunting query through Microsoft Graph; needs "
                              "ThreatHunting.Read.All)")
    sub = command(commands, "run", _run_command, help="run a plugin.yaml action by its id",
                  description="Run a plugin.yaml action by its id.")
    sub.add_argument("action_id")
    sub.add_argument("--params", default="{}", help="the action's parameters as JSON")


def _lookup_command(args: argparse.Namespace) -> int:

    fmt = output_format(args)
    values = read_values(args.values)
    if not values:
        args.subparser.error("give at least one value (or - to read them from standard input)")
    envelopes = lookup_values(args.kind, values, config_path=args.config,
                              use_cache=not args.no_cache, include_raw=args.include_raw,
                              contact=args.contact)
    return emit(envelopes, fmt)


def read_values(values: list[str]) -> list[str]:
    """The values, with a lone `-` replaced by standard input's lines; blank lines and
    `#` comments are skipped, as in any list of indicators an analyst keeps."""
    expanded: list[str] = []
    for value in values:
        if value != "-":
            expanded.append(value)
            continue
        for line in sys.stdin:
            text = line.strip()
            if text and not text.startswith("#"):
                expanded.append(text)
    return expanded


def lookup_values(kind: str, values: list[str], *, config_path: str | None, use_cache: bool,
                  include_raw: bool, contact: bool = False) -> list[dict[str, Any]]:
    from integration.compose import enricher_for
    from integration.values.envelope import ACTION_BY_KIND, as_dicts, error_envelope
    from integration.values.indicators import parse

    try:
        enricher = enricher_for(path=config_path)
    except PluginError as config_error:
        # Bad input is still reported as bad input; the rest cannot be looked up.
        envelopes = []
        for value in values:
            try:
                indicator = parse(kind, value)  # type: ignore[arg-type]
            except PluginError as input_error:
                envelopes.append(error_envelope(ACTION_BY_KIND[kind], input_error,
                                                original=value).to_dict())
            else:
                envelopes.append(error_envelope(ACTION_BY_KIND[kind], config_error,
                                                indicator=indicator).to_dict())
        return envelopes
    # An analyst is waiting: the interactive lane of the rate budget.
    return as_dicts(enricher.lookup_many(kind, values, use_cache=use_cache,  # type: ignore[arg-type]
                                         include_raw=include_raw, priority="interactive",
                                         contact=contact))


def _run_command(args: argparse.Namespace) -> int:
    from integration.bounded import DOCUMENT, parse_json
    from integration.config import read_config_file
    from integration.manifest import manifest

    fmt = output_format(args)
    try:
        action = manifest().action(args.action_id)
    except PluginError as error:
        print(f"mde-enrich run: {error.code}: {error.message}", file=sys.stderr)
        return error.exit_status
    try:
        params = parse_json(args.params, limits=DOCUMENT, what="--params")
    except InvalidInput as error:
        envelope = action_error(action.id, error)
    else:
        try:
            config = read_config_file(args.config) if args.config else None
        except PluginError as error:
            envelope = action_error(action.id, error)
        else:
            envelope = action.resolve()(params, config)
    return emit([envelope], fmt)


def action_error(action_id: str, error: PluginError) -> dict[str, Any]:
    """The error envelope of an action that could not start (bad --params or config)."""
    from integration.values.envelope import KIND_BY_ACTION, error_envelope

    if action_id in KIND_BY_ACTION:
        return error_envelope(action_id, error).to_dict()
    return {"action": action_id, "status": "error", "summary": {"api_calls": 0},
            "error": error.to_dict()}


def emit(envelopes: list[dict[str, Any]], fmt: str) -> int:
    from integration.render import render

    print(render(envelopes, fmt))
    return exit_status_for(envelopes)
