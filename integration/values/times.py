"""Times as the services send them (Defender's machine records, Graph's hunting rows), read
by one parser: offsets, seven-digit fractions and impossible dates handled alike."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from integration.values.short_cache import short_text_cache

# Defender's times: 2018-08-02T14:55:03.7791856Z (seven fraction digits, which
# datetime.fromisoformat cannot read before Python 3.11), or fewer digits, or none,
# or a numeric offset. A time without an offset is taken as UTC, as Defender's are.
_TIME = re.compile(
    r"(\d{4}-\d\d-\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?"
    r"(?:[Zz]|([+-])(\d\d):?(\d\d))?",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH.toordinal()


def parse_time(value: Any) -> tuple[int, str] | None:
    """(epoch milliseconds, RFC 3339 UTC with milliseconds) or None when unreadable."""
    if not value or not isinstance(value, str):
        return None
    return _parse_time_text(value)


@short_text_cache(maxsize=8192, max_len=64)
def _parse_time_text(value: str) -> tuple[int, str] | None:
    """Cached: a machine's firstSeen and lastSeen come back the same in every answer that
    lists it, and a running process serves many answers about one fleet."""
    match = _TIME.fullmatch(value)
    if not match:
        return None
    ymd, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    day_ms = _day_ms(ymd)
    if day_ms is None:
        return None
    h, mi, s = int(hour), int(minute), int(second)
    if h > 23 or mi > 59 or s > 59:
        return None
    # Milliseconds are truncated, not rounded: rounding could carry into the next second.
    millis = (fraction + "00")[:3] if fraction else "000"
    epoch_ms = day_ms + ((h * 60 + mi) * 60 + s) * 1000 + int(millis)
    if sign:
        oh, om = int(off_h), int(off_m)
        if oh > 23 or om > 59:
            return None
        offset_ms = (oh * 60 + om) * 60000
        if offset_ms:
            epoch_ms += -offset_ms if sign == "+" else offset_ms
            try:
                utc = _EPOCH + timedelta(milliseconds=epoch_ms)
            except OverflowError:
                return None
            return epoch_ms, (
                f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:"
                f"{utc.minute:02d}:{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
            )
    return epoch_ms, f"{ymd}T{hour}:{minute}:{second}.{millis}Z"


@lru_cache(maxsize=4096)
def _day_ms(ymd: str) -> int | None:
    """Epoch milliseconds of a YYYY-MM-DD midnight (UTC), None for a date that does not
    exist; cached, as the machines of one answer share few days."""
    try:
        day = date(int(ymd[:4]), int(ymd[5:7]), int(ymd[8:10]))
    except ValueError:
        return None
    return (day.toordinal() - _EPOCH_ORDINAL) * 86_400_000
