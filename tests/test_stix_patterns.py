"""STIX 2.1 patterns read by OASIS's grammar into the indicators Defender can answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integration.errors import InvalidInput
from integration.lookup.stix_patterns import indicator_from_observable, indicators_from_pattern
from integration.values.indicators import Indicator

STIX = Path(__file__).parent / "corpus" / "feeds" / "stix"


def _patterns(name: str) -> list[str]:
    bundle = json.loads((STIX / name).read_text(encoding="utf-8"))
    return [o["pattern"] for o in bundle["objects"] if o["type"] == "indicator"]


def _values(pattern: str) -> list[tuple[str, str]]:
    return [(i.type, i.value) for i in indicators_from_pattern(pattern).indicators]


def test_a_domain_comparison_is_a_normalized_domain():
    assert _values("[domain-name:value = 'Evil.Example.']") == [("domain", "evil.example")]


def test_a_url_comparison_is_its_host():
    found = indicators_from_pattern("[url:value = 'http://evil.example/x.php']")
    assert found.indicators == [Indicator("domain", "evil.example", "http://evil.example/x.php")]


def test_every_value_of_an_in_set_is_an_indicator():
    assert _values("[domain-name:value IN ('a.example', 'b.example')]") == [
        ("domain", "a.example"), ("domain", "b.example")]


def test_hash_keys_are_read_however_the_producer_spells_them():
    sha256 = "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c"
    pattern = (f"[file:hashes.'SHA-256' = '{sha256}'] OR [file:hashes.md5 = "
               f"'001DD76872D80801692FF942308C64E6'] OR "
               f"[file:hashes.SHA1 = '6cbce4a295c163791b60fc23d285e6d84f28ee4c']")
    assert _values(pattern) == [("sha256", sha256), ("md5", "001dd76872d80801692ff942308c64e6"),
                                ("sha1", "6cbce4a295c163791b60fc23d285e6d84f28ee4c")]


def test_an_ip_beside_a_domain_is_skipped_with_its_reason():
    found = indicators_from_pattern("[domain-name:value = 'a.example' OR "
                                    "ipv4-addr:value = '10.0.0.1']")
    assert [(i.value) for i in found.indicators] == ["a.example"]
    assert [(s.what, s.reason) for s in found.skipped] == [
        ("ipv4-addr:value = '10.0.0.1'", "unsupported_object")]


@pytest.mark.parametrize("pattern", [
    "[domain-name:value LIKE '%.example']",
    "[domain-name:value MATCHES '^evil']",
    "[file:hashes.MD5 != '001dd76872d80801692ff942308c64e6']",
    "[domain-name:value NOT IN ('a.example')]",
])
def test_what_names_no_value_to_look_up_is_an_unsupported_operator(pattern: str):
    found = indicators_from_pattern(pattern)
    assert found.indicators == []
    assert [s.reason for s in found.skipped] == ["unsupported_operator"]


def test_a_hash_of_the_wrong_length_for_its_key_is_an_invalid_value():
    found = indicators_from_pattern("[file:hashes.'SHA-1' = '001dd76872d80801692ff942308c64e6']")
    assert found.indicators == []
    assert found.skipped[0].reason == "invalid_value"
    assert "MD5" in found.skipped[0].message


def test_text_that_is_not_a_pattern_is_refused():
    with pytest.raises(InvalidInput, match=r"not a STIX 2\.1 pattern"):
        indicators_from_pattern("domain-name:value = 'a.example'")


def test_oasis_c2_example_yields_its_sha256_and_skips_its_ip():
    found = [indicators_from_pattern(p) for p in _patterns("indicators-for-C2-with-COA.json")]
    assert [i.type for f in found for i in f.indicators] == ["sha256"]
    assert [s.reason for f in found for s in f.skipped] == ["unsupported_object"]


def test_oasis_poison_ivy_report_yields_its_domains_and_names_its_malformed_one():
    found = [indicators_from_pattern(p) for p in _patterns("poisonivy.json")]
    domains = {i.value for f in found for i in f.indicators}
    assert {"www.webserver.dynssl.com", "microsofta.byinter.net", "js001.3322.org"} <= domains
    invalid = [s for f in found for s in f.skipped if s.reason == "invalid_value"]
    assert any("domain autuo.xicp.net" in s.message for s in invalid)
    assert all(i.type == "domain" for f in found for i in f.indicators)


def test_oasis_apt1_report_yields_md5s_and_domains_and_skips_certificates():
    found = [indicators_from_pattern(p) for p in _patterns("apt1.json")]
    types = {i.type for f in found for i in f.indicators}
    assert types == {"domain", "md5"}
    skipped = {s.what.split(":")[0] for f in found for s in f.skipped}
    assert {"ipv4-addr", "x509-certificate"} <= skipped


def test_an_observable_file_object_gives_its_hashes():
    found = indicator_from_observable({"type": "file", "hashes": {
        "SHA-256": "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c",
        "SSDEEP": "3:abc"}})
    assert [i.type for i in found.indicators] == ["sha256"]
    assert [s.reason for s in found.skipped] == ["unsupported_object"]


def test_an_observable_of_another_type_is_skipped():
    found = indicator_from_observable({"type": "ipv4-addr", "value": "10.0.0.1"})
    assert found.indicators == [] and found.skipped[0].reason == "unsupported_object"
