"""Configuration: a YAML/JSON file or a dict, each key overridable by an MDE_<KEY> variable.

Validated against schemas/config.schema.json. Errors name the key and never echo a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from integration import schemas
from integration.clouds import Endpoints, resolve_endpoints
from integration.errors import ConfigError, PluginError

CONFIG_SCHEMA = "config.schema.json"
SECRET_KEYS = frozenset({"client_secret", "password", "user_assertion"})
# Keys whose URL may carry a password in its user info: never echoed whole.
URL_KEYS = {"proxy": "proxy URL (http:// or https://)",
            "state": "state URL (sqlite:///absolute/path.db, sqlite:relative/path.db or "
                     "redis://host:port/db)"}
ENV_PREFIX = "MDE_"
CONFIG_PATH_VARIABLE = "MDE_CONFIG"
MANAGED_IDENTITY = "managed_identity"
DEVICE_CODE = "device_code"
ON_BEHALF_OF = "on_behalf_of"
MANAGED_IDENTITY_KEYS = ("managed_identity_client_id", "managed_identity_resource_id",
                         "managed_identity_endpoint")


class Settings(NamedTuple):
    """Validated configuration. A NamedTuple, not a dataclass: the cold-start path defines it."""

    tenant_id: str
    # With a managed identity: the user-assigned identity's client id, else a label naming the
    # identity, because the shared token cache and rate budget are keyed by it.
    client_id: str
    endpoints: Endpoints
    client_secret: str | None = None
    certificate_path: str | None = None
    certificate_password: str | None = None
    auth: str = "client_secret"  # or client_certificate, managed_identity, device_code,
    # on_behalf_of (an app credential trading each call's user_assertion)
    user_assertion: str | None = None  # the analyst's token a platform passes in config
    managed_identity_client_id: str | None = None
    managed_identity_resource_id: str | None = None
    managed_identity_endpoint: str | None = None  # IMDS origin instead of 169.254.169.254
    cloud: str = "commercial"
    ca_bundle: str | None = None
    proxy: str | None = None
    timeout_s: float = 30.0
    state: str | None = None
    cache_ttl_s: int = 900
    max_attempts: int = 5
    deadline_s: float = 120.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 10.0
    max_retry_after_s: float = 60.0
    max_rate_wait_s: float = 30.0
    per_minute: int = 100
    per_hour: int = 1500
    rate_buckets: str = "per_api"  # or "shared"
    interactive_reserve: float = 0.2
    # The budget's windows; Defender's are a minute and an hour (benchmarks shrink them).
    rate_windows_s: tuple[float, float] = (60.0, 3600.0)
    max_concurrency: int = 8
    contact: bool = False  # the lookups' default for their `contact` parameter
    # A domain ending in one of these is a domain though its last label is no public suffix.
    internal_domain_suffixes: tuple[str, ...] = ()
    alert_formats: str | None = None  # the user's alert format rules, tried first

    def __repr__(self) -> str:  # never show a secret, even in a traceback or a debugger
        shown = self._replace(client_secret="***" if self.client_secret else None,
                              certificate_password="***" if self.certificate_password else None,
                              user_assertion="***" if self.user_assertion else None,
                              proxy=redact_url(self.proxy) if self.proxy else None,
                              state=redact_url(self.state) if self.state else None)
        return "Settings" + tuple.__repr__(shown)

    @property
    def authority(self) -> str:
        return f"{self.endpoints.authority_host}/{self.tenant_id}"

    @property
    def identity(self) -> str:
        """Who is calling which API: the key of everything shared (token, cache, budget)."""
        return f"{self.endpoints.api_base}|{self.tenant_id}|{self.client_id}"


# scheme, slashes (any number: a malformed URL must not slip through), user, ':' password '@'
_USERINFO_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*:/*[^/@:\s]*):[^@\s]*@")


def redact_url(url: str) -> str:
    """The URL without credentials (`redis://:secret@host` -> `redis://***@host`, a
    `password=` query value masked); a malformed one has its user info masked all the same."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    url = _USERINFO_PASSWORD.sub(r"\1:***@", url)  # also where urlsplit finds no netloc
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rpartition("@")[2]
        query = urlencode([(name, "***" if name.lower() == "password" else value)
                           for name, value in parse_qsl(parts.query, keep_blank_values=True)],
                          safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return url.split("://", 1)[0] + "://***"


def load_settings(config: Mapping[str, Any] | None = None, *,
                  path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `config` (a platform's dict) or `path`/$MDE_CONFIG, then MDE_<KEY>."""
    environ = os.environ if environ is None else environ
    if config is None:
        file_path = path or environ.get(CONFIG_PATH_VARIABLE)
        config = read_config_file(file_path) if file_path else {}
        if not file_path and not _environment_overrides(environ):
            raise ConfigError("no configuration: pass --config FILE (the CLI) or a config "
                              "dict (an entry point), or set MDE_CONFIG to a YAML/JSON config "
                              "file (or MDE_<KEY> variables)")
    elif not isinstance(config, Mapping):
        raise ConfigError(f"the configuration must be a mapping of keys, not "
                          f"{type(config).__name__}")
    else:
        from integration.bounded import DOCUMENT, check_nesting

        check_nesting(config, limits=DOCUMENT, what="the configuration", error=ConfigError)
    merged = {**config, **_environment_overrides(environ)}
    _validate(merged)
    return _settings_from(merged)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A config file's keys. Read bounded (size, depth, YAML aliases), and a syntax error names
    the line and column, never the line's text: that line may hold the client secret."""
    from integration.bounded import DOCUMENT, read_json, read_yaml

    file = Path(path)
    label = f"config file {str(file)!r}"
    reader = read_json if file.suffix == ".json" else read_yaml
    data = reader(file, limits=DOCUMENT, what=label, error=ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{label} must hold a mapping of keys, not {type(data).__name__}")
    return data


def _environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    properties = schemas.schema(CONFIG_SCHEMA)["properties"]
    overrides: dict[str, Any] = {}
    for key, spec in properties.items():
        variable = ENV_PREFIX + key.upper()
        if variable in environ:
            overrides[key] = _coerce(variable, environ[variable], spec)
    return overrides


def _coerce(variable: str, text: str, spec: Mapping[str, Any]) -> Any:
    kind = spec.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean":
            return {"true": True, "1": True, "yes": True,
                    "false": False, "0": False, "no": False}[text.strip().lower()]
        if kind == "object":
            from integration.bounded import DOCUMENT, parse_json

            return parse_json(text, limits=DOCUMENT, what=variable)
        if kind == "array":  # JSON, or a comma-separated list (MDE_INTERNAL_DOMAIN_SUFFIXES=a,b)
            if text.lstrip().startswith("["):
                from integration.bounded import DOCUMENT, parse_json

                return parse_json(text, limits=DOCUMENT, what=variable)
            return [item.strip() for item in text.split(",") if item.strip()]
    except (ValueError, KeyError, PluginError):
        shown = "" if variable.endswith(("SECRET", "CERTIFICATE")) else f" {text!r}"
        raise ConfigError(f"environment variable {variable}{shown} is not a valid {kind}") from None
    return text


def _validate(config: dict[str, Any]) -> None:
    _refuse_unknown_keys(config)  # first: a misspelled key explains a "required" one
    if config.get("auth") == MANAGED_IDENTITY:
        _validate_managed_identity(config)
    elif config.get("auth") == DEVICE_CODE:
        _validate_device_code(config)
    else:
        _validate_app_credential(config)
    if schemas.quick_verdict(schemas.schema(CONFIG_SCHEMA), config, CONFIG_SCHEMA) is not True:
        failure = schemas.best_error(CONFIG_SCHEMA, config)
        if failure is not None:
            raise ConfigError(_describe(failure))
    for key in ("ca_bundle",):
        if key in config and not Path(config[key]).is_file():
            raise ConfigError(f"config key '{key}': no such file {config[key]!r}")
    certificate = config.get("client_certificate")
    if certificate and not Path(certificate["path"]).is_file():
        raise ConfigError(f"config key 'client_certificate.path': no such file "
                          f"{certificate['path']!r}")


def _refuse_unknown_keys(config: Mapping[str, Any]) -> None:
    problem = schemas.unknown_names(config, schemas.schema(CONFIG_SCHEMA)["properties"], "key")
    if problem:
        raise ConfigError(f"config: {problem}")


def _validate_managed_identity(config: dict[str, Any]) -> None:
    if "user_assertion" in config:
        raise ConfigError("config key 'user_assertion' cannot be used with auth: "
                          "managed_identity (on behalf of a user needs the app's "
                          "client_secret or client_certificate)")
    for key in ("client_secret", "client_certificate"):
        if key in config:
            raise ConfigError(f"config key '{key}' cannot be used with auth: managed_identity "
                              f"(a managed identity signs in without a secret or certificate); "
                              f"remove it, or set auth to {key}")
    # Refused rather than guessed: a client_id meant as a user-assigned identity would
    # otherwise silently sign in as the system-assigned one.
    if "client_id" in config:
        raise ConfigError("config key 'client_id' does not apply to auth: managed_identity: "
                          "name a user-assigned identity with 'managed_identity_client_id' (or "
                          "'managed_identity_resource_id'); leave both out for the "
                          "system-assigned one")
    if "managed_identity_client_id" in config and "managed_identity_resource_id" in config:
        raise ConfigError("config keys 'managed_identity_client_id' and "
                          "'managed_identity_resource_id': give one of them, not both")
    # The tenant keys the shared token cache and the rate budget (Defender's limits are per
    # application and tenant), and a token from another tenant is refused by name.
    if not config.get("tenant_id"):
        raise ConfigError("config key 'tenant_id' is required (also with a managed identity)")


def _validate_device_code(config: dict[str, Any]) -> None:
    for key in ("client_secret", "client_certificate", "user_assertion",
                *MANAGED_IDENTITY_KEYS):
        if key in config:
            raise ConfigError(f"config key '{key}' cannot be used with auth: device_code (the "
                              "analyst signs in as themself through a public client app, "
                              "with no app credential)")
    for key in ("tenant_id", "client_id"):
        if not config.get(key):
            raise ConfigError(f"config key '{key}' is required with auth: device_code (the "
                              "public client app registered for mde-enrich)")


def _validate_app_credential(config: dict[str, Any]) -> None:
    stray = [key for key in MANAGED_IDENTITY_KEYS if key in config]
    if stray:
        raise ConfigError(f"config key '{stray[0]}' applies only with auth: managed_identity")
    auth = config.get("auth")
    if auth in ("client_secret", "client_certificate") and auth not in config:
        raise ConfigError(f"config key '{auth}' is required with auth: {auth}")
    has_secret = "client_secret" in config
    has_certificate = "client_certificate" in config
    if has_secret and has_certificate:
        raise ConfigError("config keys 'client_secret' and 'client_certificate': "
                          "give one of them, not both")
    for key in ("tenant_id", "client_id"):
        if not config.get(key):
            raise ConfigError(f"config key '{key}' is required")
    if not (has_secret or has_certificate):
        raise ConfigError("config key 'client_secret' or 'client_certificate' is required")


def _describe(error: Any) -> str:
    """A config error naming the key; a secret's value is never part of the message."""
    key = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "additionalProperties":  # inside a nested key: its own keys
        where = f"config key '{key}': " if key else "config: "
        problem = schemas.unknown_names(error.instance, error.schema.get("properties", {}),
                                        "key")
        return where + (problem or error.message)
    if error.validator in ("oneOf", "anyOf"):  # jsonschema would quote the whole config
        where = f"config key '{key}'" if key else "config"
        return (f"{where}: the keys fit none of the sign-in methods (auth: client_secret, "
                "client_certificate, managed_identity, device_code, on_behalf_of); see each "
                "method's keys in the README")
    if SECRET_KEYS.intersection(str(part) for part in error.absolute_path):
        return f"config key '{key}' is invalid (it must be a non-empty string)"
    if key in URL_KEYS and isinstance(error.instance, str):
        # jsonschema quotes the value, and these URLs may carry a password.
        return (f"config key '{key}': {redact_url(error.instance)!r} is not a valid "
                f"{URL_KEYS[key]}")
    return f"config key '{key or '(top level)'}': {error.message}"


def _settings_from(config: dict[str, Any]) -> Settings:
    certificate = config.get("client_certificate") or {}
    rate_limit = config.get("rate_limit") or {}
    optional = {key: config[key] for key in (
        "cloud", "ca_bundle", "proxy", "timeout_s", "state", "cache_ttl_s", "max_attempts",
        "deadline_s", "backoff_base_s", "backoff_cap_s", "max_retry_after_s", "max_rate_wait_s",
        "max_concurrency", "contact", "user_assertion", *MANAGED_IDENTITY_KEYS) if key in config}
    return Settings(
        tenant_id=config["tenant_id"],
        client_id=config.get("client_id") or _managed_identity_label(config),
        auth=config.get("auth") or ("client_secret" if "client_secret" in config
                                    else "client_certificate"),
        endpoints=resolve_endpoints(config),
        client_secret=config.get("client_secret"),
        certificate_path=certificate.get("path"),
        certificate_password=certificate.get("password"),
        per_minute=rate_limit.get("per_minute", 100),
        per_hour=rate_limit.get("per_hour", 1500),
        rate_buckets=rate_limit.get("buckets", "per_api"),
        interactive_reserve=float(rate_limit.get("interactive_reserve", 0.2)),
        rate_windows_s=_windows(rate_limit.get("windows_s", (60.0, 3600.0))),
        internal_domain_suffixes=internal_suffixes(config.get("internal_domain_suffixes")),
        alert_formats=config.get("alert_formats"),
        **optional,
    )


def _windows(value: Any) -> tuple[float, float]:
    minute, hour = value  # the schema holds it to two positive numbers
    return float(minute), float(hour)


def _managed_identity_label(config: dict[str, Any]) -> str:
    """What names a managed identity in the keys of shared state: its client id when given
    (the application id Defender's limits count), else its resource id, else the
    system-assigned identity of this Azure resource."""
    if config.get("managed_identity_client_id"):
        return str(config["managed_identity_client_id"])
    if config.get("managed_identity_resource_id"):
        return f"managed-identity:{config['managed_identity_resource_id']}"
    return "managed-identity:system-assigned"


def alert_options(config: Mapping[str, Any] | None) -> tuple[str | None, tuple[str, ...]]:
    """(`alert_formats`, `internal_domain_suffixes`) from the configuration a playbook run
    was given: the dict, else $MDE_CONFIG's file, each overridden by its MDE_ variable. Read
    without the credentials' checks: formats are needed before (and without) any lookup."""
    environ = os.environ
    given: Mapping[str, Any] = config or {}
    if config is None and environ.get(ENV_PREFIX + "CONFIG"):
        try:
            given = read_config_file(environ[ENV_PREFIX + "CONFIG"])
        except ConfigError:
            given = {}  # the lookup that needs it says what is wrong with it
    spec = schemas.schema("config.schema.json")["properties"]
    values = dict(given)
    for key in ("alert_formats", "internal_domain_suffixes"):
        variable = ENV_PREFIX + key.upper()
        if variable in environ:
            values[key] = _coerce(variable, environ[variable], spec[key])
    path = values.get("alert_formats")
    if path is not None and (not isinstance(path, str) or not path.strip()):
        raise ConfigError("alert_formats must name a YAML file of alert format rules")
    return path, internal_suffixes(values.get("internal_domain_suffixes"))


def internal_suffixes(configured: object) -> tuple[str, ...]:
    """`internal_domain_suffixes` as the domain parser takes them: lowercase, without leading
    or trailing dots, sorted (a stable cache key). The config schema has checked each one."""
    if not configured:
        return ()
    items = configured if isinstance(configured, (list, tuple)) else [configured]
    return tuple(sorted({str(item).strip().strip(".").lower() for item in items} - {""}))
