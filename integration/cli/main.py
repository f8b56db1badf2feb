"""The `mde-enrich` command.

Options may stand before or after the values and `--` ends them, so each command parses its
arguments with argparse's intermixed parsing; a lone `-` reads values from standard input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from integration.errors import EXIT_INPUT, PluginError, exit_status_for

FORMATS = ("json", "table", "markdown")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands: dict[str, Callable[[list[str]], int]] = {
        "domain": lambda rest: _lookup_command("domain", rest),
        "file": lambda rest: _lookup_command("file", rest),
        "run": _run_command,
        "playbook": _playbook_command,
        "emulator": _emulator_command,
        "demo": _demo_command,
    }
    position = next((i for i, arg in enumerate(argv) if arg in commands), None)
    if position is None or "--" in argv[:position]:
        _usage(commands)
        return 0 if {"-h", "--help"} & set(argv) else EXIT_INPUT
    # Options given before the command belong to it too: `mde-enrich --config c domain x`.
    return commands[argv[position]](argv[:position] + argv[position + 1:])


def _usage(commands: dict[str, Any]) -> None:
    print("usage: mde-enrich {" + ",".join(commands) + "} ...\n\n"
          "  domain VALUE...             machines that touched these domains\n"
          "  file VALUE...               machines that saw these files (SHA-1, SHA-256, MD5)\n"
          "  run ACTION_ID --params JSON run a plugin.yaml action\n"
          "  playbook run|validate FILE  run a playbook on alerts (mde-enrich playbook --help)\n"
          "  emulator                    serve the local Defender emulator\n"
          "  demo                        the whole flow against the emulator\n\n"
          "Run `mde-enrich COMMAND --help` for a command's options.", file=sys.stderr)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML/JSON config file (default: $MDE_CONFIG)")
    parser.add_argument("--format", choices=FORMATS,
                        help="output format (default: table on a terminal, else json)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="log each request (method, path, status, attempt, wait) to stderr")


def _parse(parser: argparse.ArgumentParser, rest: list[str]) -> argparse.Namespace:
    # Intermixed parsing lets options follow values; it does not honour `--`, so whatever
    # stands after it is appended to the positional values here.
    options, after = (rest[:rest.index("--")], rest[rest.index("--") + 1:]) if "--" in rest \
        else (rest, [])
    args = parser.parse_intermixed_args(options)
    if after:
        if not hasattr(args, "values"):
            parser.error(f"unexpected values after --: {' '.join(after)}")
        args.values = [*args.values, *after]
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                            format="mde-enrich: %(message)s")
        logging.getLogger("mde_enrich").setLevel(logging.DEBUG)
    return args


def _output_format(args: argparse.Namespace) -> str:
    return args.format or ("table" if sys.stdout.isatty() else "json")


def _lookup_command(kind: str, rest: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"mde-enrich {kind}",
        description=f"Which of our machines touched these {kind}s? A lone - reads values "
                    "from standard input, one per line.")
    parser.add_argument("values", nargs="*", metavar="VALUE")
    _common_options(parser)
    parser.add_argument("--no-cache", action="store_true", help="bypass the result cache")
    parser.add_argument("--include-raw", action="store_true",
                        help="keep Defender's record of each machine in mde.raw")
    args = _parse(parser, rest)
    values = _expand_stdin(args.values)
    if not values:
        parser.error("give at least one value (or - to read them from standard input)")
    envelopes = lookup_values(kind, values, config_path=args.config, use_cache=not args.no_cache,
                              include_raw=args.include_raw)
    return _emit(envelopes, _output_format(args))


def lookup_values(kind: str, values: list[str], *, config_path: str | None, use_cache: bool,
                  include_raw: bool) -> list[dict[str, Any]]:
    from integration.config import load_settings
    from integration.lookup.envelope import ACTION_BY_KIND, error_envelope
    from integration.lookup.indicators import parse
    from integration.lookup.service import Enricher

    try:
        settings = load_settings(path=config_path)
    except PluginError as config_error:
        # Bad input is still reported as bad input; the rest cannot be looked up.
        envelopes = []
        for value in values:
            try:
                indicator = parse(kind, value)  # type: ignore[arg-type]
            except PluginError as input_error:
                envelopes.append(error_envelope(ACTION_BY_KIND[kind], input_error,
                                                original=value))
            else:
                envelopes.append(error_envelope(ACTION_BY_KIND[kind], config_error,
                                                indicator=indicator))
        return envelopes
    return Enricher(settings).lookup_many(kind, values, use_cache=use_cache,  # type: ignore[arg-type]
                                          include_raw=include_raw)


def _run_command(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mde-enrich run",
                                     description="Run a plugin.yaml action by its id.")
    parser.add_argument("action_id")
    parser.add_argument("--params", default="{}", help="the action's parameters as JSON")
    _common_options(parser)
    args = _parse(parser, rest)
    from integration.config import read_config_file
    from integration.manifest import manifest

    try:
        params = json.loads(args.params)
        config = read_config_file(args.config) if args.config else None
        envelope = manifest().run(args.action_id, params, config)
    except json.JSONDecodeError as exc:
        print(f"mde-enrich run: --params is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except PluginError as error:
        print(f"mde-enrich run: {error.code}: {error.message}", file=sys.stderr)
        return error.exit_status
    return _emit([envelope], _output_format(args))


def _playbook_command(rest: list[str]) -> int:
    from integration.cli.playbook import playbook_command  # yaml and jmespath only when used

    return playbook_command(rest)


def _emulator_command(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mde-enrich emulator",
        description="Serve the local Defender API + sign-in emulator (HTTPS on 127.0.0.1).")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--state-dir", help="where its CA, keys and ready config are kept")
    parser.add_argument("--dataset", help="a YAML/JSON dataset to serve instead of the seed")
    parser.add_argument("--page-size", type=int, help="page list answers with @odata.nextLink")
    parser.add_argument("--not-found", choices=("404", "empty"), default="404",
                        help="how an unknown domain or file is answered")
    args = _parse(parser, rest)
    from integration.emulator import serve_forever

    serve_forever(port=args.port, state_dir=args.state_dir, dataset=args.dataset,
                  page_size=args.page_size, not_found=args.not_found)
    return 0


def _demo_command(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mde-enrich demo",
                                     description="The whole flow against the built-in emulator.")
    parser.add_argument("--format", choices=FORMATS, default="table")
    args = _parse(parser, rest)
    from integration.cli.demo import run_demo

    return run_demo(args.format)


def _expand_stdin(values: list[str]) -> list[str]:
    expanded: list[str] = []
    for value in values:
        if value == "-":
            expanded.extend(line.strip() for line in sys.stdin if line.strip())
        else:
            expanded.append(value)
    return expanded


def _emit(envelopes: list[dict[str, Any]], fmt: str) -> int:
    from integration.render import render

    print(render(envelopes, fmt))
    return exit_status_for(envelopes)


if __name__ == "__main__":
    sys.exit(main())
