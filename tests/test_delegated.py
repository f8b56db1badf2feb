"""Who is asking: an analyst signed in as themself (device code), or through the platform on
their behalf (on-behalf-of), gets only the machines of their own device groups, and no
answer crosses principals: not through the result cache, single-flight or the memo; on
SQLite and on Redis, through real msal against the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration import actions
from integration.compose import Parts, new_enricher
from integration.config import load_settings
from integration.defender.auth import TOKEN_CACHE_NAMESPACE
from integration.defender.delegated import device_code_cache_key, login
from integration.emulator import Emulator, seed
from integration.errors import AuthFailed
from integration.lookup.service import Enricher
from integration.state import open_store
from integration.values.envelope import as_dicts

FAST_RETRIES = {"backoff_base_s": 0.02, "backoff_cap_s": 0.1}
FINANCE_MACHINES_OF_EVIL = 1  # evil.example: one machine each in Finance, The-A-Team, Unassigned


@pytest.fixture(params=["sqlite", "redis"])
def state(request: pytest.FixtureRequest, state_url: str) -> str:
    return state_url if request.param == "sqlite" else request.getfixturevalue("redis_state_url")


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    emulator.admin.configure(device_code_interval_s=1)  # Entra's 5 s would slow every test
    return emulator


def app_config(emu: Emulator, state: str, **overrides: Any) -> dict[str, Any]:
    return emu.config(state=state, **FAST_RETRIES, **overrides)


def user_config(emu: Emulator, state: str, **overrides: Any) -> dict[str, Any]:
    return emu.device_code_config(state=state, **FAST_RETRIES, **overrides)


def approve_when_asked(emu: Emulator, decide: Any) -> threading.Thread:
    """The person at the browser: waits for the pending code, then answers it."""
    def answer() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pending = emu.admin.pending_device_codes()
            if pending:
                decide(pending[0]["user_code"])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def sign_in(emu: Emulator, config: dict[str, Any], user: str) -> None:
    parts = Parts(load_settings(config))
    shown: list[str] = []
    approve_when_asked(emu, lambda code: emu.admin.approve_device_code(code, user))
    login(parts.settings, parts.transport, parts.store, shown.append)
    assert shown and "/devicelogin" in shown[0]


def groups(envelope: dict[str, Any]) -> set[str]:
    return {group["name"] for machine in envelope["machines"] for group in machine["groups"]}


def domain(enricher: Enricher, value: str = seed.EVIL_DOMAIN, **options: Any) -> dict[str, Any]:
    return enricher.lookup("domain", value, **options).to_dict()


# ---------------------------------------------------------------- device groups, principals

def test_alice_gets_only_finance_and_the_application_then_gets_all_three_groups(
        emu: Emulator, state: str) -> None:
    sign_in(emu, user_config(emu, state), emu.alice)
    alice = domain(new_enricher(load_settings(user_config(emu, state))))
    assert groups(alice) == {"Finance"} and alice["summary"]["total_machines"] == 1
    assert alice["summary"]["principal"]["name"] == emu.alice
    assert alice["summary"]["principal"]["type"] == "user"
    application = domain(new_enricher(load_settings(app_config(emu, state))))
    assert groups(application) == {"Finance", "The-A-Team", "UnassignedGroup"}
    assert application["summary"]["cached"] is False  # alice's answer was not served
    assert application["summary"]["principal"] == {
        "type": "application", "id": emu.client_id, "name": None}


def test_the_application_first_then_alice_gets_her_own_answer(emu: Emulator,
                                                              state: str) -> None:
    assert domain(new_enricher(load_settings(app_config(emu, state))))[
        "summary"]["total_machines"] == 3
    sign_in(emu, user_config(emu, state), emu.alice)
    alice = domain(new_enricher(load_settings(user_config(emu, state))))
    assert alice["summary"]["cached"] is False and groups(alice) == {"Finance"}
    again = domain(new_enricher(load_settings(user_config(emu, state))))
    assert again["summary"]["cached"] is True and groups(again) == {"Finance"}


def test_bob_without_view_data_is_permission_denied_exit_3(emu: Emulator, state: str,
                                                          tmp_path: Path) -> None:
    sign_in(emu, user_config(emu, state), emu.bob)
    path = tmp_path / "bob.yaml"
    path.write_text(yaml.safe_dump(user_config(emu, state)))
    done = cli(path, "domain", seed.EVIL_DOMAIN)
    assert done.returncode == 3, done.stderr
    (envelope,) = json.loads(done.stdout)
    assert envelope["error"]["code"] == "permission_denied"
    assert "View Data" in envelope["error"]["message"]


def test_on_behalf_of_two_users_with_one_app_secret_each_see_their_own_groups(
        emu: Emulator, state: str) -> None:
    config = app_config(emu, state)
    seen = {}
    for user in (emu.alice, emu.carol, emu.alice):
        assertion = emu.admin.user_token(user, audience=emu.client_id)
        envelope = actions.get_machines_for_domain(
            {"domain": seed.EVIL_DOMAIN, "user_assertion": assertion}, config)
        assert envelope["summary"]["principal"]["name"] == user
        seen.setdefault(user, []).append((groups(envelope), envelope["summary"]["cached"]))
    assert seen[emu.alice] == [({"Finance"}, False), ({"Finance"}, True)]
    assert seen[emu.carol] == [({"The-A-Team"}, False)]
    # and the application, with the same config and no assertion, still sees all three
    assert groups(actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)) == \
        {"Finance", "The-A-Team", "UnassignedGroup"}


def test_two_configs_differing_only_in_the_users_token_answer_for_each_user(
        emu: Emulator, state: str) -> None:
    seen = []
    for user in (emu.alice, emu.carol):
        config = app_config(emu, state, auth="on_behalf_of",
                            user_assertion=emu.admin.user_token(user, audience=emu.client_id))
        envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)
        seen.append((envelope["summary"]["principal"]["name"], groups(envelope)))
    assert seen == [(emu.alice, {"Finance"}), (emu.carol, {"The-A-Team"})]


def test_auth_on_behalf_of_refuses_a_call_without_the_users_token(emu: Emulator,
                                                                  state: str) -> None:
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN},
                                               app_config(emu, state, auth="on_behalf_of"))
    assert envelope["error"]["code"] == "invalid_input"
    assert "user_assertion" in envelope["error"]["message"]
    assert emu.admin.api_calls() == []


def test_an_expired_user_assertion_is_auth_failed_saying_so(emu: Emulator, state: str) -> None:
    assertion = emu.admin.user_token(emu.alice, audience=emu.client_id, lifetime_s=0)
    time.sleep(1.1)
    envelope = actions.get_machines_for_domain(
        {"domain": seed.EVIL_DOMAIN, "user_assertion": assertion}, app_config(emu, state))
    assert envelope["error"]["code"] == "auth_failed"
    assert "expired" in envelope["error"]["message"]


def test_concurrent_lookups_by_two_principals_are_two_fetches(emu: Emulator,
                                                             state: str) -> None:
    emu.admin.configure(latency_s=0.3)  # long enough for both to be in flight at once
    config = app_config(emu, state)
    assertion = emu.admin.user_token(emu.alice, audience=emu.client_id)
    enricher = new_enricher(load_settings(config))
    results: dict[str, dict[str, Any]] = {}

    def run(name: str, **options: Any) -> None:
        results[name] = domain(enricher, **options)

    threads = [threading.Thread(target=run, args=("app",)),
               threading.Thread(target=run, args=("alice",),
                                kwargs={"user_assertion": assertion})]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert groups(results["alice"]) == {"Finance"}
    assert len(groups(results["app"])) == 3
    assert len([c for c in emu.admin.api_calls() if "evil.example" in c["path"]]) == 2


def test_a_files_sha1_resolution_is_shared_across_principals(emu: Emulator,
                                                            state: str) -> None:
    config = app_config(emu, state)
    enricher = new_enricher(load_settings(config))
    assertion = emu.admin.user_token(emu.dana, audience=emu.client_id)
    dana = enricher.lookup("file", seed.KNOWN_FILE["sha256"], user_assertion=assertion)
    assert dana.status == "success"
    emu.admin.clear_log()
    application = enricher.lookup("file", seed.KNOWN_FILE["sha256"])
    assert application.summary.cached is False
    assert [c["path"] for c in emu.admin.api_calls()] == \
        [f"/api/files/{seed.KNOWN_FILE['sha1']}/machines"]  # no second /api/files/{sha256}


def contact_hosts(envelope: dict[str, Any]) -> set[str]:
    return {m["hostname"] for m in envelope["machines"] if "contact" in m.get("mde", {})}


def test_a_users_contact_timeline_is_hunted_as_them_their_device_groups_only(
        emu: Emulator, state: str) -> None:
    from integration.emulator.events import HUNTING_ONLY_DEVICE_NAME

    enricher = new_enricher(load_settings(app_config(emu, state)))
    application = domain(enricher, contact=True)
    assert HUNTING_ONLY_DEVICE_NAME in contact_hosts(application)  # no device group
    assertion = emu.admin.user_token(emu.alice, audience=emu.client_id)
    alice = domain(enricher, contact=True, user_assertion=assertion)
    assert groups(alice) == {"Finance"} and not alice.get("warnings")
    assert contact_hosts(alice) == {m["hostname"] for m in alice["machines"]}
    assert HUNTING_ONLY_DEVICE_NAME not in {m["hostname"] for m in alice["machines"]}
    assert len(alice["machines"]) == 1


def test_the_signed_in_users_hunting_token_comes_from_their_refresh_token(
        emu: Emulator, state_url: str) -> None:
    sign_in(emu, user_config(emu, state_url), emu.carol)
    emu.admin.clear_log()
    carol = domain(new_enricher(load_settings(user_config(emu, state_url))), contact=True)
    assert groups(carol) == {"The-A-Team"} and not carol.get("warnings")
    assert contact_hosts(carol) == {m["hostname"] for m in carol["machines"]}
    assert len(emu.admin.token_calls()) == 1  # Graph's token: a refresh, no new sign-in


def test_playbook_memo_does_not_serve_the_applications_answer_to_a_user(
        emu: Emulator, state: str) -> None:
    from integration.playbook import LookupService

    enricher = new_enricher(load_settings(app_config(emu, state)))
    service = LookupService(lambda: enricher)
    (application,) = as_dicts(service.lookup("domain", [seed.EVIL_DOMAIN]))
    assertion = emu.admin.user_token(emu.alice, audience=emu.client_id)
    (alice,) = as_dicts(service.lookup("domain", [seed.EVIL_DOMAIN], user_assertion=assertion))
    assert len(groups(application)) == 3 and groups(alice) == {"Finance"}
    assert service.memo_hits == 0


# ---------------------------------------------------------------- a wrong secret

def test_a_wrong_secret_with_a_cached_indicator_exits_3(emu: Emulator, state: str,
                                                        tmp_path: Path) -> None:
    good, wrong = tmp_path / "good.yaml", tmp_path / "wrong.yaml"
    good.write_text(yaml.safe_dump(app_config(emu, state)))
    wrong.write_text(yaml.safe_dump(app_config(emu, state, client_secret="Emu8Q~not-it")))
    assert cli(good, "domain", seed.EVIL_DOMAIN).returncode == 0
    done = cli(wrong, "domain", seed.EVIL_DOMAIN)
    assert done.returncode == 3, done.stdout
    (envelope,) = json.loads(done.stdout)
    assert envelope["error"]["code"] == "auth_failed" and envelope["machines"] == []
    assert "Emu8Q~not-it" not in done.stdout + done.stderr


def test_on_behalf_of_with_a_wrong_secret_never_gets_the_users_cached_answer(
        emu: Emulator, state: str) -> None:
    assertion = emu.admin.user_token(emu.alice, audience=emu.client_id)
    params = {"domain": seed.EVIL_DOMAIN, "user_assertion": assertion}
    assert actions.get_machines_for_domain(params, app_config(emu, state))["status"] == \
        "success"
    envelope = actions.get_machines_for_domain(
        params, app_config(emu, state, client_secret="Emu8Q~rotated-away"))
    assert envelope["error"]["code"] == "auth_failed" and envelope["machines"] == []


# ---------------------------------------------------------------- login, logout, whoami

def cli(config_path: Path, *argv: str, fmt: str = "json") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "integration.cli", *argv, "--config",
                           str(config_path), "--format", fmt], capture_output=True,
                          text=True, timeout=60)


def login_cli(emu: Emulator, path: Path, decide: Any) -> subprocess.CompletedProcess[str]:
    approve_when_asked(emu, decide)
    return cli(path, "login")


@pytest.fixture
def device_code_file(emu: Emulator, state_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "me.yaml"
    path.write_text(yaml.safe_dump(user_config(emu, state_url)))
    return path


def test_mde_enrich_login_completes_when_the_code_is_approved(
        emu: Emulator, device_code_file: Path, state_url: str) -> None:
    done = login_cli(emu, device_code_file,
                     lambda code: emu.admin.approve_device_code(code, emu.alice))
    assert done.returncode == 0, done.stderr
    assert "/devicelogin" in done.stderr and "enter the code" in done.stderr
    assert f"Signed in as {emu.alice} (their device groups only)." in done.stdout
    whoami = cli(device_code_file, "whoami")
    report = json.loads(whoami.stdout)
    assert report["principal"]["name"] == emu.alice and report["scopes"] == \
        ["Machine.Read", "User.Read"] and report["token_expires_in_s"] > 3000
    # The refresh token is in the state, and nowhere in what the commands printed.
    settings = load_settings(user_config(emu, state_url))
    blob = json.loads(open_store(state_url).get(TOKEN_CACHE_NAMESPACE,
                                                device_code_cache_key(settings)) or "{}")
    (refresh,) = [entry["secret"] for entry in blob["RefreshToken"].values()]
    assert refresh not in done.stdout + done.stderr + whoami.stdout + whoami.stderr
    table = cli(device_code_file, "domain", seed.EVIL_DOMAIN, fmt="table")
    assert f"1 machine as {emu.alice} (their device groups only)" in table.stdout


def test_verbose_login_lookup_and_whoami_never_print_a_token(
        emu: Emulator, device_code_file: Path, state_url: str) -> None:
    emu.admin.configure(token_lifetime_s=300)  # so the lookup renews with the refresh token
    approve_when_asked(emu, lambda code: emu.admin.approve_device_code(code, emu.carol))
    printed = [cli(device_code_file, "login", "--verbose")]
    emu.admin.configure(token_lifetime_s=3599)
    emu.admin.clear_log()
    printed += [cli(device_code_file, "domain", seed.EVIL_DOMAIN, "--verbose", "--no-cache"),
                cli(device_code_file, "whoami", "--verbose", fmt="table")]
    assert all(done.returncode == 0 for done in printed), [d.stderr for d in printed]
    assert "Lookups run as carol@" in printed[-1].stdout
    text = "".join(done.stdout + done.stderr for done in printed)
    assert "GET /api/domains/evil.example/machines -> 200" in text  # it did log
    assert len(emu.admin.token_calls()) == 1  # the renewal, with the refresh token
    blob = json.loads(open_store(state_url).get(
        TOKEN_CACHE_NAMESPACE, device_code_cache_key(load_settings(
            user_config(emu, state_url)))) or "{}")
    secrets = [entry["secret"] for kind in ("RefreshToken", "AccessToken", "IdToken")
               for entry in blob.get(kind, {}).values()]
    assert secrets and not [secret for secret in secrets if secret in text]
    assert "0.EmuRT." not in text  # no refresh token of this emulator, rotated ones included


def test_verbose_on_behalf_of_lookup_never_prints_the_users_token(
        emu: Emulator, state_url: str, tmp_path: Path) -> None:
    assertion = emu.admin.user_token(emu.alice, audience=emu.client_id)
    path = tmp_path / "obo.yaml"
    path.write_text(yaml.safe_dump(app_config(emu, state_url, auth="on_behalf_of",
                                              user_assertion=assertion)))
    done = cli(path, "domain", seed.EVIL_DOMAIN, "--verbose")
    assert done.returncode == 0, done.stderr
    assert groups(json.loads(done.stdout)[0]) == {"Finance"}
    assert assertion not in done.stdout + done.stderr
    assert assertion.split(".")[1] not in done.stdout + done.stderr


def test_login_waits_longer_after_slow_down(emu: Emulator, device_code_file: Path) -> None:
    slow_down = {"error": "slow_down", "error_description": "AADSTS70016: slow down.",
                 "error_codes": [70016]}
    emu.admin.add_fault(r"/oauth2/v2\.0/token$", {"status": 400, "body": slow_down})
    done = login_cli(emu, device_code_file,
                     lambda code: emu.admin.approve_device_code(code, emu.alice))
    assert done.returncode == 0, done.stderr
    polls = [call["time"] for call in emu.admin.token_calls()]
    assert len(polls) == 2  # slowed down, then signed in
    assert polls[1] - polls[0] >= 1 + 5  # the interval, plus RFC 8628's five seconds


def test_a_declined_code_ends_login_with_one_clear_line(emu: Emulator,
                                                        device_code_file: Path) -> None:
    done = login_cli(emu, device_code_file, emu.admin.decline_device_code)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1] == \
        "mde-enrich login: auth_failed: sign-in declined: the code was refused at the " \
        "verification page"
    assert "Traceback" not in done.stderr


def test_an_expired_code_ends_login_with_one_clear_line(emu: Emulator,
                                                        device_code_file: Path) -> None:
    emu.admin.configure(device_code_lifetime_s=2)
    done = cli(device_code_file, "login")
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1].startswith(
        "mde-enrich login: auth_failed: sign-in not completed: the code expired")


def test_lookups_before_login_are_auth_failed_saying_to_log_in(emu: Emulator,
                                                               device_code_file: Path) -> None:
    done = cli(device_code_file, "domain", seed.EVIL_DOMAIN)
    assert done.returncode == 3
    assert "mde-enrich login" in json.loads(done.stdout)[0]["error"]["message"]
    assert emu.admin.api_calls() == []


def test_logout_forgets_the_user_and_a_cached_answer_is_not_served_after(
        emu: Emulator, device_code_file: Path, state_url: str) -> None:
    sign_in(emu, user_config(emu, state_url), emu.alice)
    assert cli(device_code_file, "domain", seed.EVIL_DOMAIN).returncode == 0
    done = cli(device_code_file, "logout")
    assert done.stdout.strip() == \
        f"Signed out {emu.alice}: their tokens are deleted from the state."
    again = cli(device_code_file, "domain", seed.EVIL_DOMAIN)
    assert again.returncode == 3
    assert json.loads(again.stdout)[0]["machines"] == []


def test_a_revoked_session_is_auth_failed_once_the_access_token_is_due(
        emu: Emulator, state_url: str) -> None:
    emu.admin.configure(token_lifetime_s=300)  # within the renewal margin from the start
    sign_in(emu, user_config(emu, state_url), emu.alice)
    emu.admin.revoke_user_sessions(emu.alice)
    envelope = domain(new_enricher(load_settings(user_config(emu, state_url))))
    assert envelope["error"]["code"] == "auth_failed"
    assert "mde-enrich login" in envelope["error"]["message"]


def test_the_access_token_is_renewed_silently_with_the_refresh_token(
        emu: Emulator, state_url: str) -> None:
    emu.admin.configure(token_lifetime_s=300)  # the first token is due at once
    sign_in(emu, user_config(emu, state_url), emu.alice)
    emu.admin.configure(token_lifetime_s=3599)
    emu.admin.clear_log()
    envelope = domain(new_enricher(load_settings(user_config(emu, state_url))))
    assert groups(envelope) == {"Finance"}
    assert len(emu.admin.token_calls()) == 1  # one refresh-token grant, no prompt
    assert not emu.admin.pending_device_codes()


def test_login_refuses_a_configuration_that_is_not_device_code(emu: Emulator,
                                                               state_url: str) -> None:
    parts = Parts(load_settings(app_config(emu, state_url)))
    with pytest.raises(Exception, match="auth: device_code"):
        login(parts.settings, parts.transport, parts.store, print)


# ---------------------------------------------------------------- test_connectivity as a user

def test_connectivity_as_a_user_says_who_which_scopes_and_how_many_groups(
        emu: Emulator, state_url: str) -> None:
    assertion = emu.admin.user_token(emu.carol, audience=emu.client_id)
    result = actions.test_connectivity({"user_assertion": assertion},
                                       app_config(emu, state_url))
    assert result["status"] == "success", result
    details = result["connectivity"]
    assert details["principal"]["name"] == emu.carol
    assert details["scopes"] == ["Machine.Read"] and details["device_groups"] == 2


def test_connectivity_as_a_user_checks_their_own_hunting_permission(
        emu: Emulator, state_url: str) -> None:
    assertion = emu.admin.user_token(emu.alice, audience=emu.client_id)
    result = actions.test_connectivity({"user_assertion": assertion, "contact": True},
                                       app_config(emu, state_url))
    assert result["status"] == "success", result
    hunting = [c for c in result["connectivity"]["capabilities"] if c["service"] == "graph"]
    assert [c["status"] for c in hunting] == ["ok"]


def test_connectivity_with_a_token_lacking_machine_read_names_what_is_missing(
        emu: Emulator, state_url: str) -> None:
    sign_in(emu, user_config(emu, state_url, client_id=emu.public_noscope_client_id),
            emu.alice)
    result = actions.test_connectivity(
        {}, user_config(emu, state_url, client_id=emu.public_noscope_client_id))
    assert result["error"]["code"] == "permission_denied"
    assert "Machine.Read" in result["error"]["message"]
    assert result["connectivity"]["scopes"] == ["Alert.Read"]


def test_device_code_config_refuses_an_app_secret(emu: Emulator, state_url: str) -> None:
    with pytest.raises(Exception, match="device_code"):
        load_settings(user_config(emu, state_url, client_secret="x"))


def test_a_user_assertion_is_never_echoed_in_a_config_error(emu: Emulator,
                                                           state_url: str) -> None:
    assertion = emu.admin.user_token(emu.alice, audience=emu.client_id)
    config = emu.managed_identity_config(state=state_url, user_assertion=assertion)
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)
    assert envelope["error"]["code"] == "config_error"
    assert assertion not in json.dumps(envelope)


def test_not_signed_in_is_auth_failed(emu: Emulator, state_url: str) -> None:
    tokens = new_enricher(load_settings(user_config(emu, state_url))).caller(None).tokens
    with pytest.raises(AuthFailed, match="mde-enrich login"):
        tokens.access_token()


# ---------------------------------------------------------------- platforms

def test_platform_forms_offer_neither_the_users_token_nor_personal_sign_in() -> None:
    from integration.platforms import action_parameters, config_fields

    fields = {field.name: field for field in config_fields()}
    assert "user_assertion" not in fields
    assert "device_code" not in fields["auth"].choices
    assert "on_behalf_of" not in fields["auth"].choices
    assert "user_assertion" not in action_parameters("domain.input.schema.json")


@pytest.mark.parametrize("advanced", ['{"user_assertion": "a.b.c"}', '{"auth": "device_code"}'])
def test_a_platforms_advanced_settings_cannot_make_one_user_everyones(advanced: str) -> None:
    from integration.errors import ConfigError
    from integration.platforms import ADVANCED_FIELD, nest_config

    with pytest.raises(ConfigError, match="runs as the application"):
        nest_config({ADVANCED_FIELD: advanced})
