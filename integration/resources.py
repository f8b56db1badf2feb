"""The one place that finds the files the plugin ships: the manifest, schemas, playbooks,
sample alerts and the alert formats.

In the repository they stay at the top level (plugin.yaml, schemas/, playbooks/) and
`integration/shipped/` links to them; the wheel build copies them into the package, so an
installed plugin reads them from site-packages. Either way they are package data, read
through `importlib.resources`. A package on disk (every pip install) is read as a plain
directory without importing `importlib.resources`: that import costs ~9 ms of the fresh
process a SOAR platform starts for each action run, and gives the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integration.errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def _package_root() -> Traversable:
    origin = getattr(sys.modules["integration"], "__file__", None)
    if origin and Path(origin).is_file():
        return Path(origin).parent
    from importlib.resources import files  # a zipped or otherwise unusual install

    return files("integration")


PACKAGE_ROOT: Traversable = _package_root()
SHIPPED: Traversable = PACKAGE_ROOT / "shipped"
MANIFEST: Traversable = SHIPPED / "plugin.yaml"
SCHEMAS: Traversable = SHIPPED / "schemas"
PLAYBOOKS: Traversable = SHIPPED / "playbooks"
SAMPLE_ALERTS: Traversable = PLAYBOOKS / "samples"
ALERT_FORMATS: Traversable = PACKAGE_ROOT / "alert_formats.yaml"


def shipped_playbook(name: str) -> Traversable | None:
    """A playbook the plugin ships, by name (`enrich-alert` or `enrich-alert.yaml`)."""
    candidate = PLAYBOOKS / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    return candidate if "/" not in name and candidate.is_file() else None


def shipped_playbook_names() -> list[str]:
    return sorted(item.name.removesuffix(".yaml") for item in PLAYBOOKS.iterdir()
                  if item.name.endswith(".yaml"))


def playbook_file(name: str) -> Traversable | Path:
    """A playbook's file: the path as given when it exists, else the shipped playbook of that
    name (an installed plugin has no playbooks/ folder in the working directory), also when
    given as the checkout's `playbooks/NAME.yaml`."""
    given = Path(name)
    if given.exists():
        return given
    if given.parent == Path("playbooks"):
        return shipped_playbook(given.name) or given
    return shipped_playbook(name) or given


SAMPLE_PREFIX = "sample:"


def sample_alert_names() -> list[str]:
    """The sample alerts the plugin ships, by name (`defender_alert`, ...)."""
    return sorted(item.name.removesuffix(".json") for item in SAMPLE_ALERTS.iterdir()
                  if item.name.endswith(".json"))


def sample_alert(name: str) -> Traversable:
    """A shipped sample alert by name (`defender_alert`, `sample:defender_alert`), or a
    ConfigError naming those there are."""
    bare = name.removeprefix(SAMPLE_PREFIX).removesuffix(".json")
    candidate = SAMPLE_ALERTS / f"{bare}.json"
    if "/" in bare or not candidate.is_file():
        raise ConfigError(f"no sample alert {bare!r}; the plugin ships: "
                          f"{', '.join(sample_alert_names())}")
    return candidate


def read_yaml(path: Traversable | Path) -> Any:
    """A shipped (or user-given) YAML file's data, read bounded; a ConfigError naming the file
    when it cannot be read or parsed."""
    from integration.bounded import DOCUMENT
    from integration.bounded import read_yaml as read_bounded

    return read_bounded(path, limits=DOCUMENT, what=path.name, error=ConfigError)
