"""Result envelopes as typed values: one per indicator, valid against envelope.schema.json
whatever happened. Code builds and reads `Envelope`; platforms get `to_dict()`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple, TypedDict

from integration.errors import PluginError, error_from_record
from integration.values.indicators import Indicator
from integration.values.machine import Machine
from integration.values.principal import Principal

ACTION_BY_KIND = {"domain": "get_machines_for_domain", "file": "get_machines_for_file_hash"}
KIND_BY_ACTION = {action: kind for kind, action in ACTION_BY_KIND.items()}
# What an envelope echoes of a value it was given: a pasted 100 KB blob is not sent back whole.
ECHO_LIMIT = 512

Status = Literal["success", "not_found", "error"]


# The JSON shapes of envelope.schema.json (and common.schema.json's indicator and error):
# what `to_dict()` gives the edges. tests/test_values.py checks the keys against the schemas.
class _IndicatorRecordRequired(TypedDict):
    original: Any  # as given; not always a string when the input was invalid


class IndicatorRecord(_IndicatorRecordRequired, total=False):
    type: Literal["domain", "sha1", "sha256", "md5"]
    value: str
    sha1: str


class _ErrorRecordRequired(TypedDict):
    code: str
    message: str
    retryable: bool


class ErrorRecord(_ErrorRecordRequired, total=False):
    http_status: int


class _SummaryRecordRequired(TypedDict):
    total_machines: int
    truncated: bool
    api_calls: int
    cached: bool


class PrincipalRecord(TypedDict):
    type: Literal["application", "user"]
    id: str
    name: str | None


class SummaryRecord(_SummaryRecordRequired, total=False):
    hunting_calls: int
    principal: PrincipalRecord


class _EnvelopeRecordRequired(TypedDict):
    action: str
    status: Status
    machines: list[Machine]
    summary: SummaryRecord


class EnvelopeRecord(_EnvelopeRecordRequired, total=False):
    indicator: IndicatorRecord
    error: ErrorRecord
    warnings: list[str]


class Summary(NamedTuple):
    total_machines: int = 0
    truncated: bool = False
    api_calls: int = 0
    cached: bool = False
    # Advanced-hunting calls of the contact timeline: one query serves a whole batch, so
    # this is the batch's count, shared by its envelopes; None when contact was not asked.
    hunting_calls: int | None = None
    # Whom the answer was fetched for (and may only be served to); None before sign-in.
    principal: Principal | None = None

    def to_dict(self) -> dict[str, Any]:
        summary = self._asdict()
        if self.hunting_calls is None:
            del summary["hunting_calls"]
        if self.principal is None:
            del summary["principal"]
        else:
            summary["principal"] = self.principal.to_dict()
        return summary

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        return cls(**{**data, "principal": Principal.from_dict(data.get("principal"))})


class Envelope(NamedTuple):
    """One indicator's answer, typed: what the package passes around. Only the edges (the
    entry points, the CLI, the platform adapters) turn it into the JSON of envelope.schema."""

    action: str
    status: str  # success | not_found | error
    indicator: dict[str, Any] | None = None
    machines: list[dict[str, Any]] = []  # never mutated, so one shared default is safe
    summary: Summary = Summary()
    error: PluginError | None = None  # the error itself: its class, cause, status, service
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        envelope: dict[str, Any] = {"action": self.action, "status": self.status}
        if self.indicator is not None:
            envelope["indicator"] = self.indicator
        envelope["machines"] = self.machines
        envelope["summary"] = self.summary.to_dict()
        if self.error is not None:
            envelope["error"] = self.error.to_dict()
        if self.warnings:
            envelope["warnings"] = list(self.warnings)
        return envelope

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """An envelope read back from storage (a batch's memo, a sweep's progress)."""
        error = data.get("error")
        return cls(action=data["action"], status=data["status"], indicator=data.get("indicator"),
                   machines=data.get("machines", []),
                   summary=Summary.from_dict(data.get("summary", {})),
                   error=error_from_record(error) if isinstance(error, Mapping) else None,
                   warnings=tuple(data.get("warnings", ())))

    def as_asked(self, value: Any) -> Envelope:
        """A shared answer, told in the words this caller used."""
        if not self.indicator or self.indicator.get("original") == value:
            return self
        return self._replace(indicator={**self.indicator, "original": echo(value)})

    def from_cache(self) -> Envelope:
        """The same answer, as served again: it cost no call."""
        return self._replace(summary=self.summary._replace(api_calls=0, cached=True))


def as_dicts(envelopes: Iterable[Envelope]) -> list[dict[str, Any]]:
    """Envelopes as the JSON the edges hand out (entry points, CLI, platforms)."""
    return [envelope.to_dict() for envelope in envelopes]


def lookup_envelope(action: str, indicator: Indicator, machines: list[dict[str, Any]], *,
                    api_calls: int, truncated: bool = False, cached: bool = False,
                    sha1: str | None = None, warnings: tuple[str, ...] = (),
                    principal: Principal | None = None) -> Envelope:
    described = describe(indicator)
    if sha1:
        described["sha1"] = sha1
    return Envelope(action=action, status="success" if machines else "not_found",
                    indicator=described, machines=machines,
                    summary=Summary(len(machines), truncated, api_calls, cached,
                                    principal=principal),
                    warnings=warnings)


def error_envelope(action: str, error: PluginError, *, indicator: Indicator | None = None,
                   original: Any = None, api_calls: int | None = None,
                   principal: Principal | None = None) -> Envelope:
    described = describe(indicator) if indicator is not None else \
        ({"original": echo(original)} if original is not None else None)
    calls = error.api_calls if api_calls is None else api_calls
    return Envelope(action=action, status="error", indicator=described,
                    summary=Summary(api_calls=calls, principal=principal), error=error)


def describe(indicator: Indicator) -> dict[str, Any]:
    return {"type": indicator.type, "value": indicator.value,
            "original": echo(indicator.original)}


def echo(value: Any) -> Any:
    """What an envelope may say back of a value it was given: JSON, and bounded in size.
    Bytes, sets, dates and other objects are shown by their repr."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if not isinstance(value, str):
        try:
            text = json.dumps(value)
            value = value if len(text) <= ECHO_LIMIT else text
        except (TypeError, ValueError):
            value = repr(value)
        if not isinstance(value, str):
            return value
    return value if len(value) <= ECHO_LIMIT else value[:ECHO_LIMIT - 1] + "…"
