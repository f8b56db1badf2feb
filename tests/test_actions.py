"""The entry points end to end: msal, requests and TLS against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from integration import actions
from integration.emulator import Emulator, seed

SHA1_UNKNOWN = "0" * 40
SHA256_UNKNOWN = "ab" * 32


def domain(config: dict[str, Any], value: Any, **params: Any) -> dict[str, Any]:
    return actions.get_machines_for_domain({"domain": value, **params}, config)


def file_hash(config: dict[str, Any], value: Any, **params: Any) -> dict[str, Any]:
    return actions.get_machines_for_file_hash({"file_hash": value, **params}, config)


def test_defanged_url_finds_the_domains_machines(config: dict, emulator: Emulator) -> None:
    envelope = domain(config, "hxxps://Evil[.]example/payload?x=1")
    assert envelope["status"] == "success"
    assert envelope["indicator"] == {"type": "domain", "value": "evil.example",
                                     "original": "hxxps://Evil[.]example/payload?x=1"}
    assert envelope["summary"] == {"total_machines": 3, "truncated": False, "api_calls": 1,
                                   "cached": False, "principal": {
                                       "type": "application", "id": emulator.client_id,
                                       "name": None}}
    assert [call["path"] for call in emulator.admin.api_calls()] == \
        ["/api/domains/evil.example/machines"]


def test_machines_are_normalized_artifacts(config: dict) -> None:
    machines = domain(config, seed.EVIL_DOMAIN)["machines"]
    docs_machine = next(m for m in machines if m["uid"] == seed.DOCS_MACHINE_ID)
    assert docs_machine["hostname"] == "mymachine1.contoso.com"
    assert docs_machine["groups"] == [{"uid": "140", "name": "The-A-Team"}]
    assert docs_machine["mde"]["portal_url"].endswith(f"/machines/{seed.DOCS_MACHINE_ID}/overview")
    assert "raw" not in docs_machine["mde"]


def test_include_raw_keeps_defenders_record(config: dict) -> None:
    machines = domain(config, seed.EVIL_DOMAIN, include_raw=True)["machines"]
    assert all(machine["mde"]["raw"]["id"] == machine["uid"] for machine in machines)


def test_international_domain_is_sent_as_punycode(config: dict, emulator: Emulator) -> None:
    envelope = domain(config, seed.IDN_DOMAIN_UNICODE)
    assert envelope["status"] == "success"
    assert envelope["indicator"]["value"] == "xn--bcher-kva.example"
    assert emulator.admin.api_calls()[0]["path"] == "/api/domains/xn--bcher-kva.example/machines"


def test_unknown_domain_answered_404_is_not_found(config: dict) -> None:
    envelope = domain(config, "never-seen.example")
    assert envelope["status"] == "not_found"
    assert envelope["machines"] == []
    assert "error" not in envelope


def test_unknown_domain_answered_with_an_empty_200_is_not_found(config: dict,
                                                                emulator: Emulator) -> None:
    emulator.admin.configure(not_found="empty")
    assert domain(config, "never-seen.example")["status"] == "not_found"


def test_known_domain_without_machines_is_not_found(config: dict) -> None:
    assert domain(config, seed.EMPTY_DOMAIN)["status"] == "not_found"


def test_answer_at_the_500_machine_cap_is_marked_truncated(config: dict) -> None:
    envelope = domain(config, seed.CAPPED_DOMAIN)
    assert envelope["summary"]["total_machines"] == 500
    assert envelope["summary"]["truncated"] is True


def test_paged_answer_is_followed_to_the_end(config: dict, emulator: Emulator) -> None:
    emulator.admin.configure(page_size=5)
    envelope = domain(config, seed.PHISH_DOMAIN)
    assert envelope["summary"]["total_machines"] == 12
    assert envelope["summary"]["api_calls"] == 3
    assert len({machine["uid"] for machine in envelope["machines"]}) == 12


def test_next_link_to_another_host_is_not_followed(config: dict, emulator: Emulator) -> None:
    emulator.admin.add_fault("/api/domains/", {"status": 200, "body": {
        "value": [], "@odata.nextLink": "https://attacker.example/api/domains/x/machines"}})
    envelope = domain(config, seed.EVIL_DOMAIN)
    assert envelope["error"]["code"] == "upstream_error"
    assert "nextLink" in envelope["error"]["message"]
    assert len(emulator.admin.api_calls()) == 1


def test_sha1_goes_straight_to_the_machines_call(config: dict, emulator: Emulator) -> None:
    envelope = file_hash(config, seed.KNOWN_FILE["sha1"].upper())
    assert envelope["status"] == "success"
    assert envelope["indicator"]["type"] == "sha1"
    assert envelope["summary"]["api_calls"] == 1
    assert [call["path"] for call in emulator.admin.api_calls()] == \
        [f"/api/files/{seed.KNOWN_FILE['sha1']}/machines"]


@pytest.mark.parametrize("kind", ["sha256", "md5"])
def test_sha256_and_md5_are_resolved_to_the_files_sha1(config: dict, emulator: Emulator,
                                                        kind: str) -> None:
    envelope = file_hash(config, seed.KNOWN_FILE[kind])
    assert envelope["status"] == "success"
    assert envelope["indicator"]["type"] == kind
    assert envelope["indicator"]["value"] == seed.KNOWN_FILE[kind]
    assert envelope["indicator"]["sha1"] == seed.KNOWN_FILE["sha1"]
    assert envelope["summary"]["api_calls"] == 2
    assert [call["path"] for call in emulator.admin.api_calls()] == [
        f"/api/files/{seed.KNOWN_FILE[kind]}", f"/api/files/{seed.KNOWN_FILE['sha1']}/machines"]


def test_sha256_unknown_to_defender_is_not_found(config: dict) -> None:
    envelope = file_hash(config, SHA256_UNKNOWN)
    assert envelope["status"] == "not_found"
    assert envelope["summary"]["api_calls"] == 1


def test_unknown_sha1_is_not_found_in_both_not_found_modes(config: dict,
                                                           emulator: Emulator) -> None:
    assert file_hash(config, SHA1_UNKNOWN)["status"] == "not_found"
    emulator.admin.configure(not_found="empty")
    assert file_hash(config, SHA1_UNKNOWN, use_cache=False)["status"] == "not_found"


def test_known_file_without_machines_is_not_found(config: dict) -> None:
    assert file_hash(config, seed.EMPTY_FILE["sha1"])["status"] == "not_found"


@pytest.mark.parametrize("value", ["evil..example", "10.0.0.1", "*.evil.example", "a b.example",
                                   "🦊.example", ""])
def test_invalid_domain_is_refused_without_sending_anything(config: dict, emulator: Emulator,
                                                            value: str) -> None:
    envelope = domain(config, value)
    assert envelope["status"] == "error"
    assert envelope["error"]["code"] == "invalid_input"
    assert envelope["error"]["retryable"] is False
    assert emulator.admin.requests_log() == []  # not even a token request


@pytest.mark.parametrize("value", ["xyz", "g" * 40, "a" * 41, "0x" + "a" * 38])
def test_invalid_hash_is_refused_without_sending_anything(config: dict, emulator: Emulator,
                                                          value: str) -> None:
    envelope = file_hash(config, value)
    assert envelope["error"]["code"] == "invalid_input"
    assert emulator.admin.requests_log() == []


@pytest.mark.parametrize("params", [{}, {"domain": 7}, {"domain": "evil.example", "extra": 1},
                                    {"domain": "evil.example", "use_cache": "no"}])
def test_parameters_that_break_the_input_schema_are_invalid_input(config: dict,
                                                                  params: dict) -> None:
    envelope = actions.get_machines_for_domain(params, config)
    assert envelope["error"]["code"] == "invalid_input"
    assert "invalid parameters" in envelope["error"]["message"]


def test_second_lookup_within_the_ttl_comes_from_the_cache(config: dict,
                                                          emulator: Emulator) -> None:
    domain(config, seed.EVIL_DOMAIN)
    emulator.admin.clear_log()
    envelope = domain(config, "EVIL.example.")
    assert envelope["summary"]["cached"] is True
    assert envelope["summary"]["api_calls"] == 0
    assert envelope["summary"]["total_machines"] == 3
    assert emulator.admin.api_calls() == []


def test_use_cache_false_asks_defender_again(config: dict, emulator: Emulator) -> None:
    domain(config, seed.EVIL_DOMAIN)
    envelope = domain(config, seed.EVIL_DOMAIN, use_cache=False)
    assert envelope["summary"]["cached"] is False
    assert len(emulator.admin.api_calls()) == 2


def test_use_cache_false_does_not_write_the_cache_either(config: dict,
                                                        emulator: Emulator) -> None:
    domain(config, seed.EVIL_DOMAIN, use_cache=False)
    assert domain(config, seed.EVIL_DOMAIN)["summary"]["cached"] is False
    assert len(emulator.admin.api_calls()) == 2


def test_not_found_is_cached_too(config: dict, emulator: Emulator) -> None:
    domain(config, "never-seen.example")
    assert domain(config, "never-seen.example")["summary"]["cached"] is True
    assert len(emulator.admin.api_calls()) == 1


def test_errors_are_never_cached(config: dict, emulator: Emulator) -> None:
    emulator.admin.add_fault("/api/domains/", {"status": 403})
    assert domain(config, seed.EVIL_DOMAIN)["status"] == "error"
    assert domain(config, seed.EVIL_DOMAIN)["status"] == "success"


def test_requests_name_the_plugin_and_ask_for_gzip(config: dict, emulator: Emulator) -> None:
    domain(config, seed.EVIL_DOMAIN)
    call = emulator.admin.api_calls()[0]
    assert call["user_agent"].startswith("mde-enrich/")
    assert "gzip" in call["accept_encoding"]


def test_certificate_credentials_sign_in(emulator: Emulator, state_url: str) -> None:
    config = emulator.config(state=state_url, client_id=emulator.cert_client_id,
                             client_certificate={"path": emulator.client_cert_path,
                                                 "password": emulator.client_cert_password})
    del config["client_secret"]
    assert domain(config, seed.EVIL_DOMAIN)["status"] == "success"


def test_configured_ca_bundle_wins_over_requests_ca_bundle(config: dict,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path) -> None:
    bogus = tmp_path / "not-the-emulators-ca.pem"
    bogus.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bogus))
    assert domain(config, seed.EVIL_DOMAIN)["status"] == "success"


def test_app_without_machine_roles_is_permission_denied(emulator: Emulator,
                                                        state_url: str) -> None:
    config = emulator.config(state=state_url, client_id=emulator.noroles_client_id,
                             client_secret=emulator.noroles_client_secret)
    envelope = domain(config, seed.EVIL_DOMAIN)
    assert envelope["error"]["code"] == "permission_denied"
    assert "Missing application roles" in envelope["error"]["message"]
    assert envelope["error"]["retryable"] is False


def test_wrong_client_secret_is_auth_failed_and_never_echoed(emulator: Emulator,
                                                             state_url: str) -> None:
    secret = "wrong-Secret-value-1234567890"
    envelope = domain(emulator.config(state=state_url, client_secret=secret), seed.EVIL_DOMAIN)
    assert envelope["error"]["code"] == "auth_failed"
    assert "AADSTS7000215" in envelope["error"]["message"]
    assert secret not in str(envelope)
    assert emulator.admin.api_calls() == []


def test_unknown_tenant_is_auth_failed(emulator: Emulator, state_url: str) -> None:
    config = emulator.config(state=state_url, tenant_id="11111111-2222-3333-4444-555555555555")
    assert domain(config, seed.EVIL_DOMAIN)["error"]["code"] == "auth_failed"


def test_missing_configuration_key_is_config_error_naming_it(emulator: Emulator) -> None:
    config = emulator.config()
    del config["tenant_id"]
    envelope = domain(config, seed.EVIL_DOMAIN)
    assert envelope["error"]["code"] == "config_error"
    assert "'tenant_id'" in envelope["error"]["message"]


def test_config_error_never_echoes_the_secret(emulator: Emulator) -> None:
    config = emulator.config(client_secret=12345678901)
    envelope = domain(config, seed.EVIL_DOMAIN)
    assert envelope["error"]["code"] == "config_error"
    assert "12345678901" not in envelope["error"]["message"]


def test_connectivity_reports_the_tokens_roles(config: dict, emulator: Emulator) -> None:
    envelope = actions.test_connectivity({}, config)
    assert envelope["status"] == "success"
    assert envelope["connectivity"]["roles"] == ["Machine.Read.All"]
    assert envelope["connectivity"]["warnings"] == []
    assert [call["path"] for call in emulator.admin.api_calls()] == ["/api/machines"]


def test_connectivity_warns_when_no_machine_role_is_granted(emulator: Emulator,
                                                            state_url: str) -> None:
    config = emulator.config(state=state_url, client_id=emulator.noroles_client_id,
                             client_secret=emulator.noroles_client_secret)
    envelope = actions.test_connectivity({}, config)
    assert envelope["error"]["code"] == "permission_denied"
    assert "neither Machine.Read.All nor Machine.ReadWrite.All" in \
        envelope["connectivity"]["warnings"][0]


def test_a_new_process_reuses_the_token_in_shared_state(config: dict,
                                                        emulator: Emulator) -> None:
    from integration.compose import new_enricher
    from integration.config import load_settings

    first, second = new_enricher(load_settings(config)), new_enricher(load_settings(config))
    first.lookup("domain", seed.EVIL_DOMAIN)
    second.lookup("domain", seed.PHISH_DOMAIN)
    assert len(emulator.admin.token_calls()) == 1
    assert second.tokens.tokens_fetched == 0


def test_a_file_name_given_as_a_domain_is_refused_and_nothing_is_sent(
        config: dict, emulator: Emulator) -> None:
    envelope = domain(config, "igfxtray.exe")
    assert envelope["status"] == "error"
    assert envelope["error"]["code"] == "invalid_input"
    assert "'exe' is not a public suffix (it looks like a file name" in \
        envelope["error"]["message"]
    assert emulator.admin.api_calls() == []


def test_an_internal_suffix_in_the_config_makes_a_private_name_a_domain(
        config: dict, emulator: Emulator) -> None:
    assert domain(config, "build01.corp")["status"] == "error"
    envelope = domain({**config, "internal_domain_suffixes": ["corp"]}, "build01.corp")
    assert envelope["status"] == "not_found"
    assert [call["path"] for call in emulator.admin.api_calls()] == \
        ["/api/domains/build01.corp/machines"]


def test_a_sysmon_marked_hash_is_looked_up_and_an_imphash_is_refused(
        config: dict, emulator: Emulator) -> None:
    found = file_hash(config, f"SHA1={seed.KNOWN_FILE['sha1'].upper()}")
    assert found["status"] == "success"
    assert found["indicator"]["value"] == seed.KNOWN_FILE["sha1"]
    calls = len(emulator.admin.api_calls())
    refused = file_hash(config, "IMPHASH=D90D8C7812AEC8DA0FA173AFA1293AB2")
    assert refused["status"] == "error" and "IMPHASH" in refused["error"]["message"]
    assert len(emulator.admin.api_calls()) == calls
