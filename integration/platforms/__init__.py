"""Other SOAR platforms' packaging of this plugin, generated from plugin.yaml and schemas/.

Each platform wants its configuration as a flat list of scalar settings (a Splunk SOAR asset,
Cortex configuration items), while schemas/config.schema.json nests a few of them
(`client_certificate.path`, `rate_limit.per_minute`). `config_fields()` flattens the schema
once for every platform and `nest_config()` turns the platform's flat values back into a
plugin configuration, so the config schema stays the one source of truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integration import schemas
from integration.errors import ConfigError
from integration.manifest import manifest

CONFIG_SCHEMA = "config.schema.json"
# The analyst's token: neither a platform setting nor an argument. None of these platforms
# hands an integration the analyst's Entra token, so their lookups run as the application
# (README, "Who is asking"); an argument would also leave the token in the platform's records.
# `rate_limit.windows_s` shrinks Defender's minute and hour for tests against the emulator:
# no platform setting either.
NOT_ON_PLATFORMS = frozenset({"user_assertion", "windows_s"})
# Sign-in methods for a person, not a platform: device_code needs someone at a terminal
# (and would share one analyst's session with every user of the platform); on_behalf_of
# needs the analyst's token on each call, which these platforms do not have.
PERSONAL_AUTH = frozenset({"device_code", "on_behalf_of"})
RUNS_AS = ("Lookups run as the application (every device group its roles reach): this "
           "platform does not pass the analyst's Microsoft Entra identity to an integration, "
           "so answers are not limited to the analyst's device groups. Limit them with the "
           "app registration's roles, or sign analysts in with `mde-enrich login` at a "
           "terminal.")
# The settings every platform's form shows (top-level config keys). The others (retries,
# backoff, rate limits, host overrides, ...) keep the plugin's defaults; a platform with no
# "advanced" section of its own takes them, when needed, as one JSON object (ADVANCED_FIELD).
ESSENTIAL_SETTINGS = ("tenant_id", "client_id", "client_secret", "client_certificate", "cloud",
                      "region", "contact", "ca_bundle", "proxy", "state")
ADVANCED_FIELD = "advanced_settings"
ADVANCED_DESCRIPTION = ("other settings as a JSON object, e.g. {\"timeout_s\": 60, "
                        "\"rate_limit\": {\"per_minute\": 50}}; the keys and their defaults "
                        "are mde-enrich's config schema")


@dataclass(frozen=True)
class ConfigField:
    """One flat platform setting and where it goes in the plugin configuration."""

    name: str  # flat name, e.g. client_certificate_password
    path: tuple[str, ...]  # where it goes, e.g. ("client_certificate", "password")
    kind: str  # string, integer, number or boolean
    description: str
    required: bool = False
    sensitive: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()

    @property
    def essential(self) -> bool:
        return self.path[0] in ESSENTIAL_SETTINGS


def config_fields() -> list[ConfigField]:
    """The config schema's properties, nested objects flattened to `<parent>_<child>`."""
    schema = schemas.schema(CONFIG_SCHEMA)
    return list(_fields(schema, (), set(schema.get("required", ()))))


def _fields(node: Mapping[str, Any], prefix: tuple[str, ...],
            required: set[str]) -> Iterable[ConfigField]:
    for key, prop in node.get("properties", {}).items():
        if key in NOT_ON_PLATFORMS:
            continue
        path = (*prefix, key)
        if prop.get("type") == "object":
            # A nested object's own `required` only holds once the object is used at all.
            yield from _fields(prop, path, set())
            continue
        yield ConfigField(
            name="_".join(path), path=path, kind=_kind(prop),
            description=prop.get("description") or _describe(path),
            required=key in required and not prefix,
            # writeOnly is how the schema marks a secret: never echoed back.
            sensitive=bool(prop.get("writeOnly")),
            default=prop.get("default"),
            choices=tuple(str(choice) for choice in prop.get("enum", ())
                          if key != "auth" or choice not in PERSONAL_AUTH))


def action_parameters(input_schema: str) -> dict[str, Any]:
    """An action's parameters as a platform offers them (the analyst's token left out)."""
    return {name: node for name, node in schemas.properties(input_schema).items()
            if name not in NOT_ON_PLATFORMS}


def _kind(prop: Mapping[str, Any]) -> str:
    kind = prop.get("type")
    if kind in ("string", "integer", "number", "boolean"):
        return str(kind)
    return "string"  # enums of words, and anything else a text box can hold


def _describe(path: tuple[str, ...]) -> str:
    return " ".join(path).replace("_", " ").capitalize()


def nest_config(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A plugin configuration from flat platform values.

    Empty values are left out so the plugin's own defaults apply: platforms send every
    setting of a form, filled in or not. Integers may arrive as 30.0 from a JSON number.
    """
    config: dict[str, Any] = _advanced(flat.get(ADVANCED_FIELD))
    for field in config_fields():
        value = flat.get(field.name)
        if value is None or value == "":
            continue
        if field.kind == "integer" and isinstance(value, float) and value.is_integer():
            value = int(value)
        target = config
        for part in field.path[:-1]:
            target = target.setdefault(part, {})
        target[field.path[-1]] = value
    return config


def _advanced(text: Any) -> dict[str, Any]:
    """The advanced settings' JSON object; the form's own fields are set over it."""
    import copy
    import json

    if text is None or (isinstance(text, str) and not text.strip()):
        return {}
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{ADVANCED_FIELD}: not valid JSON ({exc.msg} at character "
                          f"{exc.pos})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{ADVANCED_FIELD}: must be a JSON object of settings, not "
                          f"{type(value).__name__}")
    # One analyst's token (or session) for every user of the platform is what these keys
    # would make of an instance: refused, never used.
    if any(key in value for key in NOT_ON_PLATFORMS) or value.get("auth") in PERSONAL_AUTH:
        raise ConfigError(f"{ADVANCED_FIELD}: a platform instance runs as the application; "
                          "user_assertion and auth: device_code / on_behalf_of would share "
                          "one analyst's access with every user of the platform")
    return copy.deepcopy(value)


def plugin_version() -> str:
    return str(manifest().data["version"])


def copy_wheel(wheel: Path, folder: Path) -> Path:
    """An mde-enrich wheel copied into a platform's files (bundled rather than fetched from
    a package index mde-enrich may not be on); the copy's path."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(wheel, folder / wheel.name))
