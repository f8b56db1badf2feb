"""The `mde-enrich` command: one argparse parser with subcommands.

Options may stand before the command (`mde-enrich --config c.yaml domain x`), between the
values or after them, and `--` ends them (`mde-enrich domain -- -odd-value`); a lone `-` reads
values from standard input. Each subcommand's work lives beside this module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from integration import __version__
from integration.cli.options import command, common_options, output_format
from integration.errors import EXIT_INPUT, PluginError


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
        return int(args.handler(args))
    except SystemExit as done:  # argparse's own exits: --help, --version, a usage error
        return done.code if isinstance(done.code, int) else EXIT_INPUT
    except KeyboardInterrupt:
        # Ctrl-C: a batch resumes where it stopped on its next run; no traceback needed.
        print("mde-enrich: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `mde-enrich ... | head -1`: the reader left; say nothing more and exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = build_parser(only=_command_named(argv))
    # Everything after `--` is a value, never an option.
    options, after = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    args, extras = parser.parse_known_args(options)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        raise SystemExit(EXIT_INPUT)
    # Values that follow an option (`domain a --format json b`) come back as extras.
    stray = [extra for extra in extras if extra.startswith("-") and extra != "-"]
    values = [extra for extra in extras if extra not in stray] + after
    if stray:
        args.subparser.error(f"unrecognized arguments: {' '.join(stray)}")
    if values:
        if not hasattr(args, "values"):
            args.subparser.error(f"unexpected values: {' '.join(values)}")
        args.values = [*args.values, *values]
    if getattr(args, "verbose", False):
        from integration.log_scrub import verbose_to_stderr

        verbose_to_stderr()
    return args


COMMANDS = ("domain", "file", "run", "playbook", "formats", "sweep", "worker", "emulator",
            "demo", "export", "login", "logout", "whoami", "samples")
_TOP_OPTIONS_WITH_VALUES = frozenset({"--config", "--format"})


def _command_named(argv: list[str]) -> str | None:
    """The command argv names (options before it skipped with their values), or None."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--":
            return None
        elif arg in _TOP_OPTIONS_WITH_VALUES:
            skip = True
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The one parser. With `only`, the other subcommands are left out: a run uses one,
    and declaring all costs ~2 ms of every cold start. Help and errors get them all."""
    parser = argparse.ArgumentParser(
        prog="mde-enrich", description="Which of our machines touched this domain or file? "
                                       "Microsoft Defender for Endpoint enrichment.")
    parser.add_argument("--version", action="version", version=f"mde-enrich {__version__}")
    common_options(parser, top=True)
    # An explicit prog: argparse would otherwise build a help formatter to work it out,
    # importing shutil and sizing the terminal on every run (~4 ms of a cold start).
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", prog="mde-enrich")
    wanted = _Only(commands, only)
    if only in (None, "domain", "file", "run"):
        from integration.cli import lookups

        lookups.add_commands(wanted)
    if only in (None, "playbook"):
        from integration.cli import playbook

        playbook.add_command(wanted)
    if only in (None, "formats"):
        from integration.cli import formats

        formats.add_command(wanted)
    if only in (None, "sweep"):
        from integration.cli import sweep

        sweep.add_command(wanted)
    if only in (None, "worker"):
        from integration.cli import worker

        worker.add_command(wanted)
    if only in (None, "login", "logout", "whoami"):
        from integration.cli import session

        session.add_commands(wanted)
    _add_emulator(wanted)
    _add_demo(wanted)
    _add_export(wanted)
    _add_samples(wanted)
    return parser


class _Only:
    """The subparsers action, declaring only the wanted command (or all, for None)."""

    def __init__(self, commands: Any, only: str | None) -> None:
        self._commands, self._only = commands, only

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if self._only not in (None, name):
            return _UNUSED
        parser: argparse.ArgumentParser = self._commands.add_parser(name, **kwargs)
        return parser


class _Unused(argparse.ArgumentParser):
    """Takes a subcommand's declarations and keeps none of them."""

    def __init__(self) -> None:  # no ArgumentParser set-up: nothing is ever parsed here
        pass

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def set_defaults(self, **kwargs: Any) -> None:
        return None

    def add_subparsers(self, **kwargs: Any) -> Any:
        return _Only(None, "")


_UNUSED = _Unused()


def _add_emulator(commands: Any) -> None:
    sub = command(commands, "emulator", _emulator_command,
                   help="serve the local Defender emulator",
                   description="Serve the local Defender API + sign-in emulator (HTTPS on "
                               "127.0.0.1).")
    sub.add_argument("--port", type=_port, default=0, help="default: a free port")
    sub.add_argument("--state-dir", help="where its CA, keys and ready config are kept")
    sub.add_argument("--dataset", help="a YAML/JSON dataset to serve instead of the seed")
    sub.add_argument("--page-size", type=int, help="page list answers with @odata.nextLink")
    sub.add_argument("--not-found", choices=("404", "empty"), default="404",
                     help="how an unknown domain or file is answered")


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def _emulator_command(args: argparse.Namespace) -> int:
    from integration.emulator import serve_forever

    try:
        serve_forever(port=args.port, state_dir=args.state_dir, dataset=args.dataset,
                      page_size=args.page_size, not_found=args.not_found)
    except OSError as exc:  # the port is taken, the state folder is not writable...
        where = f": {exc.filename}" if exc.filename else ""
        print(f"mde-enrich emulator: cannot start: {exc.strerror or exc}{where}",
              file=sys.stderr)
        return EXIT_INPUT
    except ValueError as exc:  # a setting out of range (--page-size 0), a bad dataset file
        print(f"mde-enrich emulator: {exc}", file=sys.stderr)
        return EXIT_INPUT
    return 0


def _add_demo(commands: Any) -> None:
    command(commands, "demo", _demo_command, help="the whole flow against the emulator",
             description="The whole flow against the built-in emulator.")


def _demo_command(args: argparse.Namespace) -> int:
    from integration.cli.demo import run_demo

    return run_demo(output_format(args, default="table"))


def _add_export(commands: Any) -> None:
    sub = command(commands, "export", _export_command,
                   help="write a SOAR platform's files from plugin.yaml",
                   description="Write a platform's integration files, generated from "
                               "plugin.yaml, into OUTDIR.")
    sub.add_argument("platform", choices=("xsoar", "splunk", "cortex"))
    sub.add_argument("outdir")
    sub.add_argument("--wheel", metavar="FILE",
                     help="an mde-enrich wheel to bundle (`pip wheel --no-deps .`); without "
                          "it the files install mde-enrich from your package index")


def _export_command(args: argparse.Namespace) -> int:
    from integration.platforms.export import export, next_steps

    try:
        written = export(args.platform, args.outdir, args.wheel)
    except PluginError as error:
        print(f"mde-enrich export: {error.code}: {error.message}", file=sys.stderr)
        return error.exit_status
    for path in written:
        print(path)
    # The paths on stdout (for scripts), what to do with them on stderr (for people).
    if not args.wheel:
        print(f"mde-enrich export: these files install mde-enrich=={__version__} from your "
              "package index; publish it there, or pass --wheel FILE to bundle a built wheel",
              file=sys.stderr)
    print("Next steps:", file=sys.stderr)
    for number, step in enumerate(next_steps(args.platform, args.outdir, args.wheel), 1):
        print(f"  {number}. {step}", file=sys.stderr)
    return 0


def _add_samples(commands: Any) -> None:
    sub = command(commands, "samples", _samples_command, help="list or print the shipped "
                                                               "sample alerts",
                  description="The sample alerts the plugin ships (one per alert format). "
                              "Give one to a playbook as --alert sample:NAME.")
    sub.add_argument("name", nargs="?", metavar="NAME", help="print this sample alert")


def _samples_command(args: argparse.Namespace) -> int:
    from integration.resources import sample_alert, sample_alert_names

    if args.name:
        try:
            print(sample_alert(args.name).read_text(encoding="utf-8"), end="")
        except PluginError as error:
            print(f"mde-enrich samples: {error.code}: {error.message}", file=sys.stderr)
            return error.exit_status
        return 0
    names = sample_alert_names()
    if output_format(args, default="table") == "json":  # a listing for people, unless asked
        emit_json([{"name": name, "alert": f"sample:{name}"} for name in names])
    else:
        for name in names:
            print(f"sample:{name}")
    return 0


def emit_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))
