"""The `mde-enrich` command: one parser with subcommands (see `main`)."""

from integration.cli.main import main

__all__ = ["main"]
