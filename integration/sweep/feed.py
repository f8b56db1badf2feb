"""What a threat-intel feed gives a sweep: indicators Defender can answer, and what was
skipped (with a stable reason word and a message), whatever the feed's format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from integration.values.indicators import Indicator

# The reasons a feed entry is not swept (stable words, for scripts that read the output).
REASONS = ("unsupported_object", "unsupported_operator", "unsupported_type",
           "unsupported_pattern_type", "invalid_value", "revoked", "expired", "not_to_ids")


@dataclass(frozen=True)
class FeedIndicator:
    """An indicator as one feed names it: where (`ref`: a STIX id, a MISP attribute uuid, a
    line number) and under what name (an indicator's name, a MISP event's info)."""

    indicator: Indicator
    feed: str
    ref: str | None = None
    name: str | None = None

    @property
    def key(self) -> str:
        return f"{self.indicator.type}:{self.indicator.value}"

    def to_dict(self) -> dict[str, Any]:
        return {"indicator": list(self.indicator), "feed": self.feed, "ref": self.ref,
                "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedIndicator:
        kind, value, original = data["indicator"]
        return cls(Indicator(kind, value, original), data["feed"], data.get("ref"),
                   data.get("name"))


@dataclass(frozen=True)
class Skipped:
    feed: str
    ref: str | None
    what: str
    reason: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"feed": self.feed, "ref": self.ref, "what": self.what, "reason": self.reason,
                "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skipped:
        return cls(data["feed"], data.get("ref"), data["what"], data["reason"], data["message"])


@dataclass
class FeedRead:
    """One feed's indicators and skips. `carry` is what the feed keeps between sweeps (a TAXII
    collection's objects and `added_after` position), saved once the sweep has finished."""

    feed: str
    indicators: list[FeedIndicator] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    carry: dict[str, Any] | None = None
    # The `internal_domain_suffixes` configuration: a private name in a feed is a domain.
    internal_suffixes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"feed": self.feed, "indicators": [i.to_dict() for i in self.indicators],
                "skipped": [s.to_dict() for s in self.skipped], "carry": self.carry}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedRead:
        return cls(data["feed"], [FeedIndicator.from_dict(i) for i in data["indicators"]],
                   [Skipped.from_dict(s) for s in data["skipped"]], data.get("carry"))
