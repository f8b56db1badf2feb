"""Whatever text comes in, a parsed indicator can only produce a clean request path.

The parser either refuses with `InvalidInput` (never another exception) or returns an
indicator whose path has no '/', '%', '?', '#', '..', whitespace or upper case, and whose
value parses to itself.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration.defender import urls
from integration.errors import InvalidInput
from integration.values.indicators import Indicator, parse_domain, parse_file_hash

DOMAIN_PATH = re.compile(r"^/api/domains/[a-z0-9_-]+(\.[a-z0-9_-]+)+/machines$")
FILE_INFO_PATH = re.compile(r"^/api/files/([0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64})$")
FILE_MACHINES_PATH = re.compile(r"^/api/files/[0-9a-f]{40}/machines$")

PROPERTY_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Pieces a near-miss domain or URL is built from: real labels, IDN and look-alike labels,
# defanging, URL punctuation, and the characters that must never reach a path.
LABELS = st.sampled_from([
    "evil", "example", "com", "xn--bcher-kva", "bücher", "пример", "рф", "例え", "テスト",
    "faß", "ΟΔΟΣ", "😀", "a-", "-a", "a--b", "_dmarc", "*", "a" * 63, "a" * 64, "123", "0",
    "EVIL", "İstanbul", "\u200b", "\u200d", "\u00ad", "xn--", "xn--zz",
    "\uff45\uff56\uff49\uff4c", "\uff11\uff12\uff17",  # full-width "evil", "127"
])
PUNCTUATION = st.sampled_from([
    ".", ".", ".", "..", "[.]", "(.)", "{dot}", "[dot]", "\u3002", "\uff0e", "/", "//", "\\", "%",
    "%2e", "%2F", "?", "#", "@", ":", ":8443", "[", "]", "[:]", "[://]", " ", "\t", "\n",
    "\x00", "\u202e", "-", "_", "*", "~", "'", '"', "<", ">", "\u3000",
])
SCHEMES = st.sampled_from(["", "", "http://", "hxxps://", "hXXp[:]//", "//", "ftp://",
                           "https:\\/\\/", "user:pw@", "http://u@"])
TAILS = st.sampled_from(["", "", "/", "/path?q=1#f", "?a=b", "#frag", ":443", ":99999",
                         ":x", "/%2e%2e/", "/../", "."])

# Mostly dot-separated labels, so that a fair share parse and the property is not vacuous.
SEPARATORS = st.one_of(st.just("."), st.just("."), st.just("."), PUNCTUATION)
near_miss_hosts = st.builds(
    lambda first, rest: first + "".join(sep + label for sep, label in rest),
    LABELS,
    st.lists(st.tuples(SEPARATORS, LABELS), min_size=0, max_size=5),
)
near_miss_domains = st.builds(lambda s, h, t: s + h + t, SCHEMES, near_miss_hosts, TAILS)
domain_like_text = st.one_of(
    st.text(),
    st.text(alphabet="abcxyz019-._/%?#@:[]()*Üü😀 \t", max_size=40),
    near_miss_domains,
)


@PROPERTY_SETTINGS
@given(domain_like_text)
def test_parsed_domain_only_makes_a_clean_path(text: str) -> None:
    try:
        indicator = parse_domain(text)
    except InvalidInput as exc:
        assert exc.code == "invalid_input"
        assert exc.message.startswith("domain ")
        assert all(ch.isprintable() for ch in exc.message)
        return
    assert indicator.type == "domain"
    assert indicator.original == text
    assert DOMAIN_PATH.fullmatch(urls.domain_machines(indicator))
    assert ".." not in indicator.value
    assert len(indicator.value) <= 253
    assert parse_domain(indicator.value) == Indicator("domain", indicator.value, indicator.value)


HEX = "0123456789abcdefABCDEF"
hash_like_text = st.one_of(
    st.text(),
    st.text(alphabet=HEX, min_size=30, max_size=66),
    st.builds(
        lambda pre, body, post: pre + body + post,
        st.sampled_from(["", " ", "\t", "0x", "0X", "sha1:", "\n", "/", "%"]),
        st.text(alphabet=HEX + "gGxX /%?#.\x00\uff11", min_size=30, max_size=66),
        st.sampled_from(["", " ", "\n", "/", "?", "#", ".."]),
    ),
)


@PROPERTY_SETTINGS
@given(hash_like_text)
def test_parsed_file_hash_only_makes_a_clean_path(text: str) -> None:
    try:
        indicator = parse_file_hash(text)
    except InvalidInput as exc:
        assert exc.code == "invalid_input"
        assert exc.message.startswith("file hash ")
        assert all(ch.isprintable() for ch in exc.message)
        return
    assert indicator.original == text
    assert FILE_INFO_PATH.fullmatch(urls.file_info(indicator))
    if indicator.type == "sha1":
        assert FILE_MACHINES_PATH.fullmatch(urls.file_machines(indicator))
    assert {"md5": 32, "sha1": 40, "sha256": 64}[indicator.type] == len(indicator.value)
    assert parse_file_hash(indicator.value) == Indicator(
        indicator.type, indicator.value, indicator.value
    )
