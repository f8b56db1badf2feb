"""What every subcommand shares: how one is declared, the common options, the output format."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

FORMATS = ("json", "table", "markdown")


def subcommand_usage(args: argparse.Namespace) -> int:
    """A command group given no subcommand (`mde-enrich playbook`): its help, exit 2."""
    from integration.errors import EXIT_INPUT

    args.subparser.print_help(sys.stderr)
    return EXIT_INPUT


def command(commands: Any, name: str, handler: Callable[[argparse.Namespace], int],
            **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand that knows its handler and the common options."""
    sub: argparse.ArgumentParser = commands.add_parser(name, **kwargs)
    sub.set_defaults(handler=handler, subparser=sub)
    common_options(sub, top=False)
    return sub


def common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Given before the command they land on the top parser; after it, on the subcommand's,
    # which must then not reset them to None: hence SUPPRESS below the top.
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", default=default,
                        help="YAML/JSON config file (default: $MDE_CONFIG)")
    parser.add_argument("--format", default=default, choices=(*FORMATS, "ocsf", "ndjson"),
                        help="output format (default: table on a terminal, else json; "
                             "ocsf and ndjson are for playbook run)")
    parser.add_argument("--verbose", "-v", action="store_true", default=default or False,
                        help="log each request (method, path, status, attempt, wait) to stderr")


def reporting_errors(prog: str, run: Callable[[argparse.Namespace], int]
                     ) -> Callable[[argparse.Namespace], int]:
    """A subcommand's handler that says an expected failure in one line and exits with its
    status (never a traceback)."""
    def handler(args: argparse.Namespace) -> int:
        from integration.errors import PluginError

        try:
            return run(args)
        except PluginError as error:
            print(f"{prog}: {error.code}: {error.message}", file=sys.stderr)
            return error.exit_status
    return handler


def output_format(args: argparse.Namespace, default: str | None = None) -> str:
    fmt = args.format or default or ("table" if sys.stdout.isatty() else "json")
    if fmt in ("ocsf", "ndjson") and not getattr(args, f"{fmt}_allowed", False):
        args.subparser.error(f"--format {fmt} is for `playbook run`")
    return str(fmt)
