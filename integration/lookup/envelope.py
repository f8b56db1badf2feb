"""Result envelopes: one per indicator, valid against envelope.schema.json whatever happened."""

from __future__ import annotations

from typing import Any

from integration.errors import PluginError
from integration.lookup.indicators import Indicator

ACTION_BY_KIND = {"domain": "get_machines_for_domain", "file": "get_machines_for_file_hash"}


def lookup_envelope(action: str, indicator: Indicator, machines: list[dict[str, Any]], *,
                    api_calls: int, truncated: bool = False, cached: bool = False,
                    sha1: str | None = None) -> dict[str, Any]:
    described = indicator.to_dict()
    if sha1:
        described["sha1"] = sha1
    return {
        "action": action,
        "status": "success" if machines else "not_found",
        "indicator": described,
        "machines": machines,
        "summary": {"total_machines": len(machines), "truncated": truncated,
                    "api_calls": api_calls, "cached": cached},
    }


def error_envelope(action: str, error: PluginError, *, indicator: Indicator | None = None,
                   original: Any = None, api_calls: int = 0) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "action": action,
        "status": "error",
        "machines": [],
        "summary": {"total_machines": 0, "truncated": False, "api_calls": api_calls,
                    "cached": False},
        "error": error.to_dict(),
    }
    if indicator is not None:
        envelope["indicator"] = indicator.to_dict()
    elif original is not None:
        envelope["indicator"] = {"original": original}
    return envelope
