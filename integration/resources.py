"""Reading the YAML files the plugin ships (plugin.yaml, the alert formats)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from integration.errors import ConfigError


def read_yaml(path: Path) -> Any:
    """The file's data; a ConfigError naming the file when it cannot be read or parsed."""
    import yaml  # only when a YAML file is read: it costs start-up time

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path.name}: cannot be read: {exc}") from None
