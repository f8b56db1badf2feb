"""One exception hierarchy. Each error carries a stable code, its retryability and an exit status.

Entry points turn these into the `error` object of the result envelope; the CLI turns them
into exit statuses. Messages are for people and must never hold a secret.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

EXIT_OK = 0
EXIT_INPUT = 2
EXIT_AUTH = 3
EXIT_UPSTREAM = 4
# sysexits.h EX_TEMPFAIL: "try again later". Cron wrappers and systemd tell an overlapping
# scheduled run apart from a misconfiguration (2) by it.
EXIT_BUSY = 75


class PluginError(Exception):
    """Base of every expected failure. Like requests' exceptions, an error carries its data
    from construction on; `replace` makes a changed copy instead of mutating a raised one.

    `status`, `service` and `path` say where an answer went wrong (HTTP status, "Defender" or
    "Graph", the request path without its query); the exception that caused it stays its
    `__cause__`. None of them ever holds a secret or a token."""

    # Per class; an instance may carry another (StepFailed takes its cause's).
    code: str = "upstream_error"
    exit_status: int = EXIT_UPSTREAM
    default_retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, retryable: bool | None = None, status: int | None = None,
                 api_calls: int = 0, service: str | None = None,
                 path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable
        self.status = status  # the HTTP status that caused it, when there was one
        self.api_calls = api_calls  # API calls made before it happened
        self.service = service
        self.path = path

    def replace(self, *, message: str | None = None, retryable: bool | None = None,
                api_calls: int | None = None, service: str | None = None,
                path: str | None = None) -> Self:
        """A copy of this error (same class, same cause) with some of its data changed."""
        copy = type(self).__new__(type(self), self.message if message is None else message)
        copy.__dict__.update(self.__dict__)
        copy.__cause__ = self.__cause__
        copy.__traceback__ = None
        for name, value in (("message", message), ("retryable", retryable),
                            ("api_calls", api_calls), ("service", service), ("path", path)):
            if value is not None:
                setattr(copy, name, value)
        return copy

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.status is not None:
            error["http_status"] = self.status
        return error


class InvalidInput(PluginError):
    code = "invalid_input"
    exit_status = EXIT_INPUT


class ConfigError(PluginError):
    code = "config_error"
    exit_status = EXIT_INPUT


class AuthFailed(PluginError):
    code = "auth_failed"
    exit_status = EXIT_AUTH


class PermissionDenied(PluginError):
    code = "permission_denied"
    exit_status = EXIT_AUTH


class RateLimited(PluginError):
    code = "rate_limited"
    default_retryable = True


class UpstreamError(PluginError):
    code = "upstream_error"


class Timeout(PluginError):
    code = "timeout"
    default_retryable = True


class NetworkError(PluginError):
    code = "network_error"
    default_retryable = True


class RunInProgress(PluginError):
    """Another run of the same scheduled batch holds its lease: not a fault, try later."""

    code = "run_in_progress"
    exit_status = EXIT_BUSY
    default_retryable = True


def first_line(value: object) -> str:
    """The first line of a message from elsewhere (msal, Entra): enough to say what failed."""
    text = str(value).strip()
    return text.splitlines()[0] if text else ""


def service_message(body: Any, service: str) -> str:
    """A Microsoft service's own words from an error body (Defender and Graph share the
    OData shape `{"error": {"code", "message"}}`); a short note when the body is not that."""
    if body is None:
        return f"the body is not {service}'s JSON"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "no details"
    parts = (error.get("code"), error.get("message"))
    return ": ".join(str(part) for part in parts if part) or "no details"


ERROR_BY_CODE: dict[str, type[PluginError]] = {
    cls.code: cls
    for cls in (InvalidInput, ConfigError, AuthFailed, PermissionDenied, RateLimited,
                UpstreamError, Timeout, NetworkError)
}
EXIT_STATUS_BY_CODE: dict[str, int] = {code: cls.exit_status for code, cls in ERROR_BY_CODE.items()}


def error_from_record(record: Any) -> PluginError:
    """The error an envelope's error object describes (its class, so its exit status)."""
    error_class = ERROR_BY_CODE.get(record.get("code", ""), UpstreamError)
    status = record.get("http_status")
    return error_class(str(record.get("message", "")), retryable=bool(record.get("retryable")),
                       status=status if isinstance(status, int) else None)


def exit_status_for(envelopes: list[dict[str, Any]]) -> int:
    """The highest exit status over a run's envelopes (DESIGN.md: 'the highest applies')."""
    status = EXIT_OK
    for envelope in envelopes:
        if envelope.get("status") == "error":
            code = envelope.get("error", {}).get("code", "upstream_error")
            status = max(status, EXIT_STATUS_BY_CODE.get(code, EXIT_UPSTREAM))
    return status
