"""Domain and file-hash parsing: refang, URL to host, IDN, hash kind.

What leaves this module is safe to put in a request path: a domain is lowercase ASCII
labels of a-z, 0-9 and '-', a hash is lowercase hex. Everything else is `InvalidInput`
with a message that names the value and says what is wrong with it.

This module sits on the cold-start path of every action run, so it does no I/O and
imports `idna` (and `ipaddress`) only when an input needs them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, NamedTuple

from integration.errors import InvalidInput
from integration.values.short_cache import short_text_cache

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

IndicatorType = Literal["domain", "sha1", "sha256", "md5"]

MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63
HASH_TYPES_BY_LENGTH: dict[int, IndicatorType] = {32: "md5", 40: "sha1", 64: "sha256"}
_EXPECTED_HASH_LENGTHS = "expected 32 (MD5), 40 (SHA-1) or 64 (SHA-256)"
_ECHO_LIMIT = 80
# Longer than any host that could still fit in 253 characters once encoded; keeps the
# IDNA work bounded for pasted junk.
_MAX_RAW_HOST_LENGTH = 1024


class Indicator(NamedTuple):
    # A NamedTuple, not a dataclass: cheaper to define on the cold-start path.
    type: IndicatorType
    value: str  # normalized: what goes into the request path
    original: str  # exactly as given

    def to_dict(self) -> dict[str, str]:
        # A SHA-256 or MD5 resolved to a SHA-1 gets `sha1` in the envelope (envelope.py).
        return {"type": self.type, "value": self.value, "original": self.original}


def parse(kind: Literal["domain", "file"], text: str,
          internal_suffixes: tuple[str, ...] = ()) -> Indicator:
    if kind == "domain":
        return parse_domain(text, internal_suffixes)
    if kind == "file":
        return parse_file_hash(text)
    raise ValueError(f"unknown indicator kind {kind!r}; expected 'domain' or 'file'")


# --- messages -----------------------------------------------------------------------------


def _echo(value: str) -> str:
    """The value for an error message: no control or format characters, bounded length."""
    clean = "".join(ch for ch in value if ch.isprintable())
    if len(clean) > _ECHO_LIMIT:
        clean = clean[: _ECHO_LIMIT - 1] + "…"
    return repr(clean)


def _char(ch: str) -> str:
    if not ch.isprintable() or ch.isspace():
        return f"U+{ord(ch):04X}"
    # A look-alike (a full-width digit for a digit) is only told apart by its code point.
    return repr(ch) if ch.isascii() else f"{ch!r} (U+{ord(ch):04X})"


def _describe_char(ch: str) -> str:
    if ch == " ":
        return "a space"
    if ch.isspace():
        return f"whitespace ({_char(ch)})"
    if not ch.isprintable():
        return f"a control character ({_char(ch)})"
    return _char(ch)


def _leading_space(text: str) -> int:
    return len(text) - len(text.lstrip())


def _invalid(what: str, text: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{what} {_echo(text)} {problem}")


# --- domains ------------------------------------------------------------------------------

# Defanged punctuation: [.] (.) {.} [dot] (dot) {dot} [:] [://] [/] [@] [at].
_DEFANGED = re.compile(r"[\[({](\.|dot|:(?://?)?|/|@|at)[\])}]", re.IGNORECASE)
_DEFANGED_SCHEME = re.compile(r"^h(?:xx|\*\*)p(s?)(?=:)", re.IGNORECASE)
_SCHEME = re.compile(r"^(?:[a-z][a-z0-9+.\-]*:)?//+", re.IGNORECASE)
_UNICODE_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
# Underscores are not in the host-name rules, but real internal names have them (and
# Defender records them as seen), so they are accepted; they are safe in a request path.
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _refang(text: str) -> str:
    text = _DEFANGED.sub(_undefang, text)
    # JSON- or regex-escaped forms: http:\/\/evil.example, evil\.example; a stray
    # backslash is a path separator, as browsers treat it.
    text = text.replace("\\/", "/").replace("\\.", ".").replace("\\", "/")
    return _DEFANGED_SCHEME.sub(r"http\1", text)


def _undefang(match: re.Match[str]) -> str:
    inner = match.group(1).lower()
    return {"dot": ".", "at": "@"}.get(inner, inner)


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code < 0xA0


def parse_domain(text: str, internal_suffixes: tuple[str, ...] = ()) -> Indicator:
    """A domain, a defanged domain, or a URL (of which only the host is kept). Its last label
    must be a public suffix (or a special-use name), or the domain must end in one of
    `internal_suffixes` (normalized, as integration.config.internal_suffixes gives them)."""
    if not isinstance(text, str):
        raise InvalidInput(f"domain must be a string, got {type(text).__name__}")
    return _parse_domain_text(text, internal_suffixes)


@short_text_cache(maxsize=2048, max_len=4096)
def _parse_domain_text(text: str, internal_suffixes: tuple[str, ...] = ()) -> Indicator:
    """Cached (an Indicator is immutable): alerts name the same domains again and again,
    and a long-lived worker parses each once. Refusals are not cached; they raise."""
    trimmed = text.strip()
    if not trimmed:
        raise _invalid("domain", text, "is empty")
    # Positions count from 1 in the text as given, surrounding whitespace included.
    for position, ch in enumerate(trimmed, _leading_space(text) + 1):
        if ch.isspace() or _is_control(ch):
            raise _invalid("domain", text, f"contains {_describe_char(ch)} at position {position}")

    host = _host_of(text, _refang(trimmed))
    if "*" in host:
        raise _invalid("domain", text, "contains '*': wildcards are not supported")
    if len(host) > _MAX_RAW_HOST_LENGTH:
        raise _invalid(
            "domain", text,
            f"has {len(host)} characters; a domain has at most {MAX_DOMAIN_LENGTH}",
        )
    # Non-ASCII case folding is left to UTS 46 (str.lower() differs, e.g. on final sigma).
    host = host.lower() if host.isascii() else host.translate(_UNICODE_DOTS)
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise _invalid("domain", text, "has no host name")

    labels = host.split(".")
    if "" in labels:
        where = "starts with a dot" if labels[0] == "" else "has two dots in a row"
        raise _invalid("domain", text, where)
    if not host.isascii():
        labels = _to_ascii_labels(text, labels)
        host = ".".join(labels)
        labels = host.split(".")  # a UTS 46 mapping may have produced a dot
    _check_domain(text, host, labels)
    if not _under_known_suffix(host, labels[-1], internal_suffixes):
        raise NotADomain(_suffix_problem(text, labels[-1]))
    return Indicator("domain", host, text)


def _host_of(text: str, value: str) -> str:
    """The host of a URL or URL-shaped value; a bare domain is its own host."""
    value = _SCHEME.sub("", value, count=1)
    end = len(value)
    for separator in "/?#":
        found = value.find(separator)
        if found != -1:
            end = min(end, found)
    authority = value[:end]
    host = authority.rpartition("@")[2]

    if host.startswith("["):
        inside, bracket, rest = host[1:].partition("]")
        if not bracket:
            raise _invalid("domain", text, "has a '[' without a closing ']'")
        if _is_ip(inside):
            raise _invalid("domain", text, "is an IP address, not a domain")
        if rest and not rest.startswith(":"):
            raise _invalid("domain", text, f"has {rest[:1]!r} after the bracketed host")
        raise _invalid(
            "domain", text, f"has a bracketed host {_echo(inside)} that is not an IP address"
        )

    if host.count(":") > 1:
        if _is_ip(host):
            raise _invalid("domain", text, "is an IP address, not a domain")
        raise _invalid("domain", text, "has more than one ':' in its host")
    host, colon, port = host.partition(":")
    if colon and port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise _invalid("domain", text, f"has port {_echo(port)}, which is not a number 0-65535")
    return host


def _is_ip(value: str) -> bool:
    import ipaddress  # only for hosts that look like addresses

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _to_ascii_labels(text: str, labels: list[str]) -> list[str]:
    """IDNA 2008 with UTS 46 mapping; never Python's built-in (IDNA 2003) codec."""
    import idna  # only needed for non-ASCII input

    out = []
    for label in labels:
        if label.isascii():
            out.append(label.lower())
            continue
        try:
            out.append(idna.encode(label, uts46=True).decode("ascii"))
        except (UnicodeError, ValueError) as exc:
            reason = "".join(ch for ch in str(exc) if ch.isprintable())[:120]
            raise _invalid(
                "domain", text,
                f"has label {_echo(label)}, which is not a valid internationalized "
                f"label (IDNA 2008): {reason}",
            ) from exc
    return out


def _check_domain(text: str, host: str, labels: list[str]) -> None:
    if len(host) > MAX_DOMAIN_LENGTH:
        raise _invalid(
            "domain", text,
            f"has {len(host)} characters; a domain has at most {MAX_DOMAIN_LENGTH}",
        )
    for label in labels:
        if not label:
            raise _invalid("domain", text, "has an empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise _invalid(
                "domain", text,
                f"has label {_echo(label)} of {len(label)} characters; "
                f"a label has at most {MAX_LABEL_LENGTH}",
            )
        for ch in label:
            if ch not in _LABEL_CHARS:
                raise _invalid(
                    "domain", text,
                    f"has label {_echo(label)} containing {_describe_char(ch)}; "
                    "a label has only a-z, 0-9 and '-'",
                )
        if label.startswith("-"):
            raise _invalid("domain", text, f"has label {_echo(label)}, which starts with a hyphen")
        if label.endswith("-"):
            raise _invalid("domain", text, f"has label {_echo(label)}, which ends with a hyphen")
    if labels[-1].isdigit():
        if _is_ip(host):
            raise _invalid("domain", text, "is an IP address, not a domain")
        raise _invalid(
            "domain", text, f"has an all-numeric top-level label {_echo(labels[-1])}"
        )
    if len(labels) < 2:
        if len(host) in HASH_TYPES_BY_LENGTH and set(host) <= _HEX:
            kind = HASH_TYPES_BY_LENGTH[len(host)].upper()
            raise _invalid("domain", text, f"looks like a {kind} file hash, not a domain: "
                                           "look it up as a file (`mde-enrich file`, or "
                                           "--type file)")
        raise _invalid(
            "domain", text,
            f"is a single label {_echo(host)}; a domain has at least two, like 'example.com'",
        )


# --- suffixes: the Public Suffix List, special-use names, the tenant's own -----------------

# Names reserved for private or documentary use (RFC 2606, 6761, 6762, 7686; ICANN's
# `internal`): never delegated, so never in the Public Suffix List, yet real networks and
# test data use them.
SPECIAL_USE_SUFFIXES = frozenset({"example", "test", "invalid", "localhost", "local", "onion",
                                  "internal"})


class NotADomain(InvalidInput):
    """A well-formed name whose last label is no public suffix: most often a file name
    (`resume.pdf`, `igfxtray.exe`). An alert's rule skips it as `not_a_domain`."""

    reason = "not_a_domain"


def _under_known_suffix(host: str, last_label: str, internal: tuple[str, ...]) -> bool:
    if last_label in SPECIAL_USE_SUFFIXES:
        return True
    if any(host == suffix or host.endswith("." + suffix) for suffix in internal):
        return True
    return _is_public_suffix(last_label)


@lru_cache(maxsize=4096)
def _is_public_suffix(label: str) -> bool:
    if label.startswith("xn--"):  # the list is read without punycode twins (see below)
        import idna

        try:
            label = idna.decode(label)
        except (UnicodeError, ValueError):
            return False
    return bool(_public_suffix_list().is_public(label))


@lru_cache(maxsize=1)
def _public_suffix_list() -> PublicSuffixList:
    """publicsuffixlist's own bundled snapshot; nothing is downloaded. Built once per
    process, on the first domain. Without its punycode twins (accept_encoded_idn=False) it
    loads in ~18 ms instead of ~66 ms (the stdlib IDNA codec is what costs); an `xn--` label
    is decoded with `idna` before the question instead."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(accept_unknown=False, accept_encoded_idn=False)


def _suffix_problem(text: str, last_label: str) -> str:
    # `pdf` and `contoso` look alike here: a file name, or a name private to a network.
    kind = "it looks like a file name, or a suffix private to your network" \
        if not last_label.isdigit() else "it looks like an address, not a host name"
    return (f"domain {_echo(text)} is not a domain: {_echo(last_label)} is not a public suffix "
            f"({kind}); add the suffix to `internal_domain_suffixes` if it is one of your "
            "networks")


# --- file hashes --------------------------------------------------------------------------

_HEX = frozenset("0123456789abcdefABCDEF")
_PREFIXES = frozenset(HASH_TYPES_BY_LENGTH.values())
# Hashes that name no file Defender can look up: import-table and fuzzy hashes. A value so
# marked is refused by name, never taken for an MD5 (an IMPHASH is 32 hex characters).
NOT_FILE_HASHES = frozenset({"imphash", "ssdeep", "tlsh", "authentihash", "vhash", "pehash"})


class NotAFileHash(InvalidInput):
    """An IMPHASH, ssdeep or TLSH: a hash, but of no file Defender knows."""

    reason = "not_a_file_hash"


def parse_file_hash(text: str) -> Indicator:
    """An MD5, SHA-1 or SHA-256 in hex, any case, surrounding whitespace ignored."""
    if not isinstance(text, str):
        raise InvalidInput(f"file hash must be a string, got {type(text).__name__}")
    trimmed = text.strip()
    # sha1:…, SHA-256:…, md5:… as tools print them; SHA1=…, IMPHASH=… as Sysmon writes them
    separator = min((i for i in (trimmed.find(":"), trimmed.find("=")) if i != -1), default=-1)
    declared = trimmed[:separator].strip().lower().replace("-", "") if separator > 0 else ""
    if declared in NOT_FILE_HASHES:
        raise NotAFileHash(f"file hash {_echo(text)} is an {declared.upper()}, not a file "
                           "hash Defender can look up (MD5, SHA-1 or SHA-256)")
    if declared in _PREFIXES:
        trimmed = trimmed[separator + 1:].strip()
    else:
        declared = ""
    if not trimmed:
        raise _invalid("file hash", text, "is empty")
    if trimmed[:2] in ("0x", "0X"):
        raise _invalid("file hash", text, "starts with '0x'; give the hex digits alone")
    for position, ch in enumerate(trimmed, _leading_space(text) + 1):
        if ch not in _HEX:
            raise _invalid(
                "file hash", text,
                f"is not hex: {_describe_char(ch)} at position {position}",
            )
    kind = HASH_TYPES_BY_LENGTH.get(len(trimmed))
    if kind is None:
        raise _invalid(
            "file hash", text,
            f"has {len(trimmed)} hex characters; {_EXPECTED_HASH_LENGTHS}",
        )
    if declared and declared != kind:
        raise _invalid("file hash", text, f"is marked {declared} but has {len(trimmed)} hex "
                                          f"characters, the length of {kind.upper()}")
    return Indicator(kind, trimmed.lower(), text)
