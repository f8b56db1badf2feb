"""test_connectivity checks each capability the configuration turns on and names what is
missing: the Defender machine roles always, Microsoft Graph's ThreatHunting.Read.All when the
contact timeline is used. Against the emulator, through msal; the last tests drive the check
list itself, as another capability (pull, write-back) would be added to it."""

from __future__ import annotations

from typing import Any

from integration import actions
from integration.config import load_settings
from integration.connectivity import Capability, check_capabilities, missing_error
from integration.emulator import Emulator
from integration.errors import AuthFailed


def by_name(envelope: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in envelope["connectivity"]["capabilities"]}


def readwrite_config(emulator: Emulator, state_url: str, **overrides: Any) -> dict[str, Any]:
    """The app that holds Machine.ReadWrite.All on Defender and nothing on Graph."""
    return emulator.config(state=state_url, client_id=emulator.readwrite_client_id,
                           client_secret=emulator.readwrite_client_secret, **overrides)


def test_without_contact_only_the_defender_roles_are_checked(config: dict,
                                                             emulator: Emulator) -> None:
    envelope = actions.test_connectivity({}, config)
    assert envelope["status"] == "success"
    assert by_name(envelope) == {"defender_machines": {
        "name": "defender_machines", "purpose": "the machine lookups (domain and file hash)",
        "service": "defender", "status": "ok",
        "needs_any_of": ["Machine.Read.All", "Machine.ReadWrite.All"],
        "message": "the machine lookups (domain and file hash): Machine.Read.All"}}
    # No Graph token is asked for when nothing needs one.
    assert len(emulator.admin.token_calls()) == 1


def test_contact_in_the_configuration_checks_the_hunting_permission(
        emulator: Emulator, state_url: str) -> None:
    envelope = actions.test_connectivity({}, emulator.config(state=state_url, contact=True))
    assert envelope["status"] == "success"
    assert by_name(envelope)["graph_hunting"]["status"] == "ok"
    assert envelope["connectivity"]["warnings"] == []
    # Read from the Graph token: no hunting query is spent on the check.
    assert [call["path"] for call in emulator.admin.api_calls()] == ["/api/machines"]


def test_a_missing_hunting_permission_is_named(emulator: Emulator, state_url: str) -> None:
    envelope = actions.test_connectivity({}, readwrite_config(emulator, state_url,
                                                              contact=True))
    checks = by_name(envelope)
    assert checks["defender_machines"]["status"] == "ok"
    assert checks["graph_hunting"]["status"] == "missing"
    assert envelope["status"] == "error"
    assert envelope["error"]["code"] == "permission_denied"
    assert envelope["error"]["message"] == (
        "missing permission: ThreatHunting.Read.All on Microsoft Graph "
        "(for the contact timeline (contact))")
    [warning] = envelope["connectivity"]["warnings"]
    assert "no ThreatHunting.Read.All" in warning and "grant the Microsoft Graph " \
        "application permission ThreatHunting.Read.All" in warning


def test_the_contact_parameter_asks_for_the_hunting_check_alone(emulator: Emulator,
                                                                state_url: str) -> None:
    config = readwrite_config(emulator, state_url)
    assert actions.test_connectivity({}, config)["status"] == "success"
    envelope = actions.test_connectivity({"contact": True}, config)
    assert envelope["error"]["code"] == "permission_denied"
    assert "ThreatHunting.Read.All" in envelope["error"]["message"]


def test_missing_machine_roles_stay_the_defender_answer(emulator: Emulator,
                                                        state_url: str) -> None:
    config = emulator.config(state=state_url, client_id=emulator.noroles_client_id,
                             client_secret=emulator.noroles_client_secret)
    envelope = actions.test_connectivity({}, config)
    assert by_name(envelope)["defender_machines"]["status"] == "missing"
    # The live call's own 403 (Defender's words) is the error.
    assert envelope["error"]["code"] == "permission_denied"
    assert "Missing application roles" in envelope["error"]["message"]


def test_a_contact_setting_makes_lookups_add_the_timeline(emulator: Emulator,
                                                          state_url: str) -> None:
    from integration.emulator import seed

    config = emulator.config(state=state_url, contact=True)
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)
    assert envelope["status"] == "success"
    assert all("contact" in machine["mde"] for machine in envelope["machines"])
    plain = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN, "contact": False},
                                            config)
    assert not any("contact" in machine["mde"] for machine in plain["machines"])


# -- the check list, as others extend it -------------------------------------------------------

ALERTS = Capability("graph_alerts_read", "pulling alerts (pull)", "graph",
                    application_any_of=("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"))


def settings() -> Any:
    return load_settings({"tenant_id": "t", "client_id": "c", "client_secret": "s"})


def test_an_added_capability_is_checked_with_the_same_token() -> None:
    asked: list[str] = []

    def claims_of(service: str) -> dict[str, Any]:
        asked.append(service)
        return {"roles": ["SecurityAlert.ReadWrite.All"]}

    results = check_capabilities(settings(), {"contact": True}, claims_of,
                                 capabilities=[ALERTS])
    assert [(r.capability.name, r.status) for r in results] == [("graph_alerts_read", "ok")]
    assert asked == ["graph"]


def test_a_capability_that_does_not_apply_is_not_checked() -> None:
    off = Capability("off", "nothing", "graph", ("X",), applies=lambda s, p: False)
    assert check_capabilities(settings(), {}, lambda service: {}, capabilities=[off]) == []


def test_a_users_token_is_checked_by_its_scopes() -> None:
    machines = Capability("m", "the lookups", "defender", ("Machine.Read.All",),
                          delegated_any_of=("Machine.Read",))
    [ok] = check_capabilities(settings(), {}, lambda s: {"scp": "Machine.Read User.Read"},
                              capabilities=[machines])
    [missing] = check_capabilities(settings(), {}, lambda s: {"scp": "User.Read"},
                                   capabilities=[machines])
    assert ok.status == "ok" and missing.status == "missing"
    assert "delegated permission Machine.Read" in missing.message


def test_a_service_whose_token_fails_is_an_error_for_its_capabilities() -> None:
    def claims_of(service: str) -> dict[str, Any]:
        raise AuthFailed("AADSTS700016: unknown client")

    [result] = check_capabilities(settings(), {}, claims_of, capabilities=[ALERTS])
    assert result.status == "error"
    assert "auth_failed: AADSTS700016" in result.message
    error = missing_error([result])
    assert error is not None and error.code == "auth_failed"
