"""What `integration.values.indicators` accepts, what it makes of it, and how it says no.

Each row reads as a line of the spec: its id says what the input is, the expectation says
what the parser must make of it.
"""

from __future__ import annotations

import pytest

from integration.errors import InvalidInput
from integration.values import indicators
from integration.values.indicators import Indicator, parse, parse_domain, parse_file_hash

LABEL_63 = "a" * 63
LABEL_64 = "a" * 64
# 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253
DOMAIN_253 = f"{LABEL_63}.{LABEL_63}.{'b' * 61}.{LABEL_63}.com"[-253:].lstrip(".-")
DOMAIN_254 = f"{LABEL_63}.{LABEL_63}.{LABEL_63}.{'b' * 62}"

SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"

GOOD_DOMAINS = [
    # plain and case
    pytest.param("evil.example", "evil.example", id="plain domain is kept"),
    pytest.param("EVIL.Example", "evil.example", id="upper case is lowered"),
    pytest.param("  evil.example\t\n", "evil.example", id="surrounding whitespace is trimmed"),
    pytest.param("evil.example.", "evil.example", id="one trailing dot is dropped"),
    pytest.param("a.b.c.evil.example", "a.b.c.evil.example", id="many labels are fine"),
    pytest.param("x-1.evil.example", "x-1.evil.example", id="inner hyphen and digits are fine"),
    pytest.param("123.example", "123.example", id="numeric label that is not the TLD is fine"),
    pytest.param("a.co", "a.co", id="a one-letter label under a public suffix is a domain"),
    # refanging
    pytest.param("evil[.]example", "evil.example", id="refang [.]"),
    pytest.param("evil(.)example", "evil.example", id="refang (.)"),
    pytest.param("evil{.}example", "evil.example", id="refang {.}"),
    pytest.param("evil[dot]example", "evil.example", id="refang [dot]"),
    pytest.param("evil(DOT)example", "evil.example", id="refang (dot) in any case"),
    pytest.param("evil{dot}example", "evil.example", id="refang {dot}"),
    pytest.param("sub[.]evil[.]example", "sub.evil.example", id="refang every dot"),
    pytest.param("hxxp://evil[.]example", "evil.example", id="refang hxxp scheme"),
    pytest.param("hxxps://evil.example/x", "evil.example", id="refang hxxps scheme"),
    pytest.param("hXXps[:]//evil[.]example", "evil.example", id="refang hXXps and [:]"),
    pytest.param("hxxps[://]evil.example", "evil.example", id="refang [://]"),
    pytest.param("http:\\/\\/evil.example\\/x", "evil.example", id="JSON-escaped slashes"),
    pytest.param("evil\\.example", "evil.example", id="regex-escaped dot"),
    # URLs of every shape
    pytest.param("https://evil.example", "evil.example", id="URL with scheme"),
    pytest.param("https://evil.example/", "evil.example", id="URL with root path"),
    pytest.param("https://evil.example/a/b?q=1#frag", "evil.example", id="URL path query fragment"),
    pytest.param("evil.example/path?q#f", "evil.example", id="URL without scheme"),
    pytest.param("evil.example?q=a/b", "evil.example", id="query straight after host"),
    pytest.param("evil.example#top", "evil.example", id="fragment straight after host"),
    pytest.param("//evil.example/x", "evil.example", id="protocol-relative URL"),
    pytest.param("ftp://evil.example", "evil.example", id="any scheme is dropped"),
    pytest.param("evil.example:8443", "evil.example", id="port is dropped"),
    pytest.param("https://evil.example:443/x", "evil.example", id="URL with port"),
    pytest.param("evil.example:", "evil.example", id="empty port is dropped"),
    pytest.param("user@evil.example", "evil.example", id="user info is dropped"),
    pytest.param("user:pw@evil.example:8443", "evil.example", id="user password and port"),
    pytest.param("https://u:p@EVIL.example:1/p", "evil.example", id="full URL with user info"),
    pytest.param("https://evil.example./x", "evil.example", id="URL host with trailing dot"),
    pytest.param("https://a@b@evil.example/", "evil.example", id="last @ ends user info"),
    pytest.param("evil.example\\path", "evil.example", id="backslash is a path separator"),
    # IDN
    pytest.param("bücher.example", "xn--bcher-kva.example", id="IDN u-umlaut to punycode"),
    pytest.param("BÜCHER.example", "xn--bcher-kva.example", id="IDN upper case folded"),
    pytest.param("пример.рф", "xn--e1afmkfd.xn--p1ai", id="IDN Cyrillic"),
    pytest.param("例え.みんな", "xn--r8jz45g.xn--q9jyb4c", id="IDN Japanese"),
    pytest.param("faß.example", "xn--fa-hia.example", id="IDNA 2008 keeps sharp s"),
    pytest.param("bücher。example", "xn--bcher-kva.example", id="ideographic full stop"),
    pytest.param("https://bücher.example/ü", "xn--bcher-kva.example", id="IDN in a URL"),
    pytest.param("xn--bcher-kva.example", "xn--bcher-kva.example", id="punycode given is kept"),
    pytest.param("XN--BCHER-KVA.example", "xn--bcher-kva.example", id="punycode is lowered"),
    # length limits
    pytest.param(f"{LABEL_63}.example", f"{LABEL_63}.example", id="63-char label is fine"),
    pytest.param(DOMAIN_253, DOMAIN_253, id="253 characters is fine"),
    pytest.param(DOMAIN_253 + ".", DOMAIN_253, id="253 characters plus trailing dot is fine"),
]

BAD_DOMAINS = [
    # empty and shape
    pytest.param("", "is empty", id="empty"),
    pytest.param(" \t\n ", "is empty", id="whitespace only"),
    pytest.param("localhost", "is a single label 'localhost'", id="single label"),
    pytest.param("example.", "is a single label", id="single label with trailing dot"),
    pytest.param(".", "has no host name", id="a dot alone"),
    pytest.param(".evil.example", "starts with a dot", id="leading dot"),
    pytest.param("evil..example", "two dots in a row", id="empty inner label"),
    pytest.param("evil.example..", "two dots in a row", id="two trailing dots"),
    pytest.param("https://", "has no host name", id="scheme alone"),
    pytest.param("/just/a/path", "has no host name", id="path alone"),
    pytest.param("user@", "has no host name", id="user info alone"),
    # characters
    pytest.param("-evil.example", "label '-evil', which starts with a hyphen", id="leading hyphen"),
    pytest.param("evil-.example", "label 'evil-', which ends with a hyphen", id="trailing hyphen"),
    pytest.param("a.b-", "label 'b-', which ends with a hyphen", id="TLD ends with a hyphen"),
    pytest.param("*.evil.example", "wildcards are not supported", id="wildcard"),
    pytest.param("evil example.com", "a space at position 5", id="space inside"),
    pytest.param("evil\texample.com", "whitespace (U+0009) at position 5", id="tab inside"),
    pytest.param("evil.example\nother.example", "whitespace (U+000A)", id="newline inside"),
    pytest.param("evil\x00.example", "control character (U+0000) at position 5", id="NUL"),
    pytest.param("evil\x1b[31m.example", "control character (U+001B)", id="escape sequence"),
    pytest.param("evil%2eexample.com", "containing '%'", id="percent-encoded dot"),
    pytest.param("evil.example:abc", "port 'abc', which is not a number", id="non-numeric port"),
    pytest.param("evil.example:99999", "port '99999'", id="port out of range"),
    pytest.param("[evil.example]", "not an IP address", id="bracketed name"),
    pytest.param("[::1", "without a closing ']'", id="unclosed bracket"),
    pytest.param("evil.example:1:2", "more than one ':'", id="two colons"),
    pytest.param("evil,example", "containing ','", id="comma"),
    # IDN
    pytest.param("😀.example", "not a valid internationalized label", id="emoji label"),
    pytest.param("i❤.example", "U+2764", id="dingbat heart (valid in IDNA 2003 only)"),
    pytest.param("evil\u202e.example", "not a valid internationalized label", id="bidi override"),
    # length limits
    pytest.param(f"{LABEL_64}.example", "of 64 characters; a label has at most 63",
                 id="64-char label"),
    pytest.param(DOMAIN_254, "has 254 characters; a domain has at most 253", id="254 characters"),
    pytest.param("a." * 150 + "example", "has 307 characters", id="300 characters"),
    pytest.param("x" * 5000, "has 5000 characters", id="huge input"),
    # addresses
    pytest.param("192.0.2.1", "is an IP address, not a domain", id="IPv4"),
    pytest.param("http://192.0.2.1:8080/x", "is an IP address", id="IPv4 URL with port"),
    pytest.param("192[.]0[.]2[.]1", "is an IP address", id="defanged IPv4"),
    pytest.param("2001:db8::1", "is an IP address", id="IPv6"),
    pytest.param("::1", "is an IP address", id="IPv6 loopback"),
    pytest.param("[2001:db8::1]", "is an IP address", id="bracketed IPv6"),
    pytest.param("https://[2001:db8::1]:443/x", "is an IP address", id="bracketed IPv6 URL"),
    pytest.param("evil.123", "all-numeric top-level label '123'", id="numeric TLD"),
    pytest.param("1.2.3", "all-numeric top-level label", id="three numbers"),
]


@pytest.mark.parametrize(("text", "expected"), GOOD_DOMAINS)
def test_domain_is_normalized(text: str, expected: str) -> None:
    indicator = parse_domain(text)
    assert indicator == Indicator("domain", expected, text)


@pytest.mark.parametrize(("text", "fragment"), BAD_DOMAINS)
def test_bad_domain_is_invalid_input(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_domain(text)
    assert caught.value.code == "invalid_input"
    assert caught.value.to_dict()["retryable"] is False
    assert fragment in caught.value.message
    assert caught.value.message.startswith("domain ")


GOOD_HASHES = [
    pytest.param(SHA1, "sha1", SHA1, id="SHA-1 lowercase"),
    pytest.param(SHA1.upper(), "sha1", SHA1, id="SHA-1 uppercase is lowered"),
    pytest.param(f"  {SHA1}\n", "sha1", SHA1, id="SHA-1 with surrounding whitespace"),
    pytest.param(SHA256, "sha256", SHA256, id="SHA-256 lowercase"),
    pytest.param(SHA256.upper(), "sha256", SHA256, id="SHA-256 uppercase is lowered"),
    pytest.param("E3b0C442" + SHA256[8:], "sha256", SHA256, id="SHA-256 mixed case"),
    pytest.param(f"\t{SHA256.upper()} ", "sha256", SHA256, id="SHA-256 upper with whitespace"),
    pytest.param(MD5, "md5", MD5, id="MD5 lowercase"),
    pytest.param(MD5.upper(), "md5", MD5, id="MD5 uppercase is lowered"),
    pytest.param(f" {MD5[:16].upper()}{MD5[16:]} ", "md5", MD5, id="MD5 mixed case, whitespace"),
]

BAD_HASHES = [
    pytest.param("", "is empty", id="empty hash"),
    pytest.param("   ", "is empty", id="whitespace-only hash"),
    pytest.param(SHA1[:39], "has 39 hex characters; expected 32 (MD5), 40 (SHA-1) or 64 (SHA-256)",
                 id="39 characters"),
    pytest.param(SHA1 + "a", "has 41 hex characters", id="41 characters"),
    pytest.param(SHA256[:63], "has 63 hex characters", id="63 characters"),
    pytest.param(SHA256 + "0", "has 65 hex characters", id="65 characters"),
    pytest.param(MD5[:31], "has 31 hex characters", id="31 characters"),
    pytest.param("g" + SHA1[1:], "is not hex: 'g' at position 1", id="non-hex letter"),
    pytest.param(SHA1[:10] + " " + SHA1[11:], "a space at position 11", id="space inside"),
    pytest.param(SHA1[:5] + "\x00" + SHA1[6:], "control character (U+0000) at position 6",
                 id="NUL"),
    pytest.param(SHA1[:39] + "-", "'-' at position 40", id="hyphen"),
    pytest.param("0x" + SHA1, "starts with '0x'", id="0x prefix"),
    pytest.param("0X" + MD5, "starts with '0x'", id="0X prefix"),
    pytest.param("\uff11" * 40, "U+FF11", id="full-width digits"),
]


@pytest.mark.parametrize(("text", "kind", "expected"), GOOD_HASHES)
def test_file_hash_is_normalized(text: str, kind: str, expected: str) -> None:
    assert parse_file_hash(text) == Indicator(kind, expected, text)


@pytest.mark.parametrize(("text", "fragment"), BAD_HASHES)
def test_bad_file_hash_is_invalid_input(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_file_hash(text)
    assert caught.value.code == "invalid_input"
    assert fragment in caught.value.message
    assert caught.value.message.startswith("file hash ")


@pytest.mark.parametrize("value", [None, 42, b"evil.example", ["evil.example"]],
                         ids=["None", "int", "bytes", "list"])
def test_non_string_is_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInput, match="must be a string"):
        parse_domain(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="must be a string"):
        parse_file_hash(value)  # type: ignore[arg-type]


def test_to_dict_keeps_the_original() -> None:
    original = "  hxxps://User@BÜCHER[.]example:443/x?y#z "
    assert parse_domain(original).to_dict() == {
        "type": "domain", "value": "xn--bcher-kva.example", "original": original,
    }
    assert parse_file_hash(f" {SHA256.upper()}\n").to_dict() == {
        "type": "sha256", "value": SHA256, "original": f" {SHA256.upper()}\n",
    }


def test_indicator_is_frozen() -> None:
    indicator = parse_domain("evil.example")
    with pytest.raises(AttributeError):
        indicator.value = "other.example"  # type: ignore[misc]


def test_parse_dispatches_by_kind() -> None:
    assert parse("domain", "evil.example").type == "domain"
    assert parse("file", MD5).type == "md5"
    with pytest.raises(ValueError, match="unknown indicator kind"):
        parse("url", "evil.example")  # type: ignore[arg-type]


def test_error_echo_is_truncated_and_free_of_control_characters() -> None:
    text = "\x1b[2J" + "a" * 300 + "\x00.example"
    with pytest.raises(InvalidInput) as caught:
        parse_domain(text)
    message = caught.value.message
    assert all(ch.isprintable() for ch in message)
    echo = message.split(" contains ")[0]
    assert len(echo) < 100  # "domain '" + ~80 characters + "'"
    assert "…" in echo


def test_idna_is_not_imported_for_ascii_input() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from integration.values.indicators import parse_domain;"
        "parse_domain('https://evil[.]example/x');"
        "print('idna' in sys.modules, 'encodings.idna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_builtin_idna_2003_codec_is_not_used() -> None:
    # The built-in codec maps sharp s to "ss" (IDNA 2003); IDNA 2008 keeps it.
    assert "faß.example".encode("idna") == b"fass.example"
    assert parse_domain("faß.example").value != "fass.example"
    assert indicators.MAX_DOMAIN_LENGTH == 253


def test_positions_count_in_the_text_as_given() -> None:
    with pytest.raises(InvalidInput, match="a space at position 7"):
        parse_domain("  evil example")
    with pytest.raises(InvalidInput, match="'g' at position 3"):
        parse_file_hash(" \tg" + SHA1[1:])


# --- suffixes: a domain ends in a public suffix, a special-use name or one of ours ------------


@pytest.mark.parametrize("name", ["igfxtray.exe", "resume.pdf", "winhelp.cpl", "logo.svg",
                                  "report.docx", "Invoice_2024.pdf.exe"])
def test_a_file_name_is_not_a_domain_and_says_so(name: str) -> None:
    with pytest.raises(indicators.NotADomain, match=r"is not a public suffix .*file name") as err:
        parse_domain(name)
    assert err.value.reason == "not_a_domain" and err.value.code == "invalid_input"


def test_a_private_name_without_its_configured_suffix_is_not_called_a_file_name() -> None:
    with pytest.raises(indicators.NotADomain, match=r"'contoso' .*suffix private to your network"):
        parse_domain("fileserver.corp.contoso")


@pytest.mark.parametrize(("text", "expected"), [
    ("evil.com", "evil.com"), ("a.b.co.uk", "a.b.co.uk"), ("shop.xn--p1ai", "shop.xn--p1ai"),
    ("магазин.рф", "xn--80aairftm.xn--p1ai"), ("files.zip", "files.zip"),
    ("evil.example", "evil.example"), ("printer.local", "printer.local"),
    ("hidden.onion", "hidden.onion"), ("svc.internal", "svc.internal"),
])
def test_a_public_or_special_use_suffix_makes_a_domain(text: str, expected: str) -> None:
    assert parse_domain(text).value == expected


def test_an_internal_suffix_makes_a_domain_of_a_private_name() -> None:
    with pytest.raises(indicators.NotADomain):
        parse_domain("build01.corp")
    assert parse_domain("build01.corp", ("corp",)).value == "build01.corp"
    assert parse_domain("a.b.lan", ("b.lan",)).value == "a.b.lan"
    with pytest.raises(indicators.NotADomain):
        parse_domain("a.xb.lan", ("b.lan",))  # a suffix ends at a label boundary


@pytest.mark.parametrize("text", [
    "SHA1=5F1E8ACEDC065031AAD553B710838EB366CFEE9A",
    "sha1:5f1e8acedc065031aad553b710838eb366cfee9a",
])
def test_a_hash_marked_as_sysmon_or_tools_write_it_is_read(text: str) -> None:
    assert parse_file_hash(text) == Indicator("sha1", "5f1e8acedc065031aad553b710838eb366cfee9a",
                                              text)


@pytest.mark.parametrize("text", ["IMPHASH=D90D8C7812AEC8DA0FA173AFA1293AB2",
                                  "imphash:d90d8c7812aec8da0fa173afa1293ab2",
                                  "ssdeep:3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C",
                                  "TLSH=T1A0F0...", "SHA256=" + "a" * 40])
def test_a_hash_of_no_file_or_of_the_wrong_length_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_file_hash(text)
    if text.lower().startswith(("imphash", "ssdeep", "tlsh")):
        assert isinstance(err.value, indicators.NotAFileHash)
        assert "not a file hash Defender can look up" in err.value.message
