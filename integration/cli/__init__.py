"""The `mde-enrich` command: one parser with subcommands (see `main`)."""

from integration.cli.command import main

__all__ = ["main"]
