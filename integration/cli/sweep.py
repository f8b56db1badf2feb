"""`mde-enrich sweep SOURCE... [--lookback P30D] [--format json|table|markdown|ocsf]
[--fail-on-new]`: which machines touched anything in these threat-intel feeds, and which
are new since the last sweep."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from integration.cli.options import command, output_format
from integration.errors import PluginError

PROG = "mde-enrich"


def add_command(commands: Any) -> None:
    sub = command(commands, "sweep", _sweep_command,
                  help="sweep threat-intel feeds: machines that touched their indicators",
                  description="Which of our machines touched any indicator of these feeds, "
                              "and which are new since the last sweep? A SOURCE is a STIX 2.1 "
                              "bundle, a TAXII 2.1 collection URL (credentials from "
                              "MDE_TAXII_USER/MDE_TAXII_PASSWORD), a MISP event JSON or feed "
                              "folder, or a CSV/text file with one indicator a line.")
    sub.add_argument("sources", nargs="*", metavar="SOURCE")
    sub.add_argument("--lookback", default="P30D",
                     help="how far back hunting looks, ISO 8601 (default P30D)")
    sub.add_argument("--fail-on-new", action="store_true",
                     help="exit 1 when machines new since the last sweep were found")
    sub.set_defaults(ocsf_allowed=True)


def _sweep_command(args: argparse.Namespace) -> int:
    fmt = output_format(args)
    if not args.sources:
        args.subparser.error("give at least one SOURCE")
    try:
        report = run_sweep(args.sources, lookback=args.lookback, config_path=args.config)
    except PluginError as error:
        print(f"{PROG}: {error.code}: {error.message}", file=sys.stderr)
        return error.exit_status
    from integration.sweep.render import render_markdown, render_ocsf, render_table
    from integration.sweep.run import exit_status

    if fmt in ("json", "ocsf"):
        document = report if fmt == "json" else render_ocsf(report)
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(render_markdown(report) if fmt == "markdown" else render_table(report))
    return exit_status(report, fail_on_new=args.fail_on_new)


def run_sweep(sources: list[str], *, lookback: str, config_path: str | None) -> dict[str, Any]:
    from integration.compose import enricher_for
    from integration.sweep.run import Sweep, lookback_seconds

    lookback_seconds(lookback)  # bad input is refused before the configuration is read
    sweep = Sweep(enricher_for(path=config_path), sources, lookback=lookback,
                  report=lambda message: print(f"{PROG}: {message}", file=sys.stderr))
    return sweep.run()
