"""The one place that builds Defender API request paths.

Every path takes a parsed `Indicator`, never a bare string, so an unvalidated value cannot
reach a URL; the value is percent-encoded again anyway, as a second line of defence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from integration.values.indicators import Indicator

MACHINES_LIST = "/api/machines"
# Microsoft Graph, on the Graph host of the cloud (clouds.py), not the Defender API host.
HUNTING_QUERY = "/v1.0/security/runHuntingQuery"


def _segment(value: str) -> str:
    return quote(value, safe="")


def domain_machines(indicator: Indicator) -> str:
    if indicator.type != "domain":
        raise TypeError(f"domain_machines needs a domain indicator, got {indicator.type}")
    return f"/api/domains/{_segment(indicator.value)}/machines"


def file_machines(sha1: Indicator) -> str:
    # The machines call accepts only SHA-1 (reference: "only SHA-1 is accepted").
    if sha1.type != "sha1":
        raise TypeError(f"file_machines needs a sha1 indicator, got {sha1.type}")
    return f"/api/files/{_segment(sha1.value)}/machines"


def file_info(indicator: Indicator) -> str:
    if indicator.type not in ("sha1", "sha256", "md5"):
        raise TypeError(f"file_info needs a file hash indicator, got {indicator.type}")
    return f"/api/files/{_segment(indicator.value)}"
