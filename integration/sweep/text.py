"""A CSV or plain-text list of indicators, one a line, as vendors and analysts keep them.

Blank lines and `#` comments are skipped. A CSV with a header takes the column named
indicator, ioc, value, domain, url, hash, sha256, sha1 or md5 (the first one found), else its
first column; a one-column file may start with such a header too. Each value is a file hash
when it is 32, 40 or 64 hex digits (optionally `sha256:`-prefixed), else a domain or URL;
anything neither (an IP address...) is skipped.
"""

from __future__ import annotations

import csv
import io
import re

from integration.errors import PluginError
from integration.sweep.feed import FeedIndicator, FeedRead, Skipped
from integration.values.indicators import parse_domain, parse_file_hash

VALUE_COLUMNS = ("indicator", "ioc", "value", "domain", "url", "hash", "sha256", "sha1", "md5")
_HASH_LIKE = re.compile(r"(?:(?:sha-?1|sha-?256|md5)\s*:\s*)?"
                        r"(?:[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64})", re.IGNORECASE)


def read_text(text: str, feed: str, internal_suffixes: tuple[str, ...] = ()) -> FeedRead:
    read = FeedRead(feed, internal_suffixes=internal_suffixes)
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return read
    column = 0
    first = lines[0][1]
    if "," in first or "\t" in first:
        dialect = "excel-tab" if "\t" in first else "excel"
        header = [cell.strip().lower() for cell in next(csv.reader([first], dialect))]
        wanted = next((name for name in VALUE_COLUMNS if name in header), None)
        if wanted is not None:
            column, lines = header.index(wanted), lines[1:]
        rows = [(number, next(csv.reader(io.StringIO(line), dialect), []))
                for number, line in lines]
        values = [(number, row[column].strip() if len(row) > column else "")
                  for number, row in rows]
    else:
        # A one-column CSV's header (`indicator`, `ioc`...) names the column: not a value.
        if first.strip().lower() in VALUE_COLUMNS:
            lines = lines[1:]
        values = [(number, line.strip()) for number, line in lines]
    for number, value in values:
        _value(value, f"line {number}", read)
    return read


def _value(value: str, ref: str, read: FeedRead) -> None:
    if not value:
        return
    try:
        indicator = parse_file_hash(value) if _HASH_LIKE.fullmatch(value) else \
            parse_domain(value, read.internal_suffixes)
    except PluginError as error:
        read.skipped.append(Skipped(read.feed, ref, value[:80], "invalid_value", error.message))
        return
    read.indicators.append(FeedIndicator(indicator, read.feed, ref))
