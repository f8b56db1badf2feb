"""Defender machine entity -> machine artifact (integration/normalize.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from integration.errors import UpstreamError
from integration.lookup.normalize import normalize_machine, normalize_machines

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "machines"
FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.json"))
DOC_ID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads((ROOT / "schemas" / "machine.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def machine(**fields: Any) -> dict[str, Any]:
    return {"id": DOC_ID, **fields}


def nulls(value: Any, path: str = "$") -> list[str]:
    """Every path in `value` that holds None."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in nulls(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in nulls(item, f"{path}[{i}]")]
    return []


# --- the documentation's example --------------------------------------------------------


def test_doc_example_becomes_the_full_artifact() -> None:
    assert normalize_machine(fixture("doc_example")) == {
        "uid": DOC_ID,
        "hostname": "mymachine1.contoso.com",
        "name": "mymachine1",
        "ip": "172.17.230.209",
        "type_id": 0,
        "type": "Unknown",
        "os": {
            "name": "Windows10",
            "type_id": 100,
            "type": "Windows",
            "version": "1709",
            "build": "18209",
            "cpu_bits": 64,
        },
        "first_seen_time": 1533221703779,
        "first_seen_time_dt": "2018-08-02T14:55:03.779Z",
        "last_seen_time": 1533221703779,
        "last_seen_time_dt": "2018-08-02T14:55:03.779Z",
        "risk_level_id": 1,
        "risk_level": "Low",
        "groups": [{"uid": "140", "name": "The-A-Team"}],
        "uid_alt": "80fe8ff8-2624-418e-9591-41f0491218f9",
        "network_interfaces": [
            {"ip": "10.166.113.47", "mac": "8c:ec:4b:89:7e:73"},
            {"ip": "2a01:110:68:4:59e4:3916:3b3e:4f96", "mac": "8c:ec:4b:89:7e:73"},
        ],
        "vendor_name": "Microsoft",
        "mde": {
            "health_status": "Active",
            "exposure_level": "Medium",
            "device_value": "Normal",
            "onboarding_status": "onboarded",
            "machine_tags": ["test tag 1", "test tag 2"],
            "last_external_ip": "167.220.196.71",
            "rbac_group_id": 140,
            "is_aad_joined": True,
            "os_processor": "x64",
            "network_interfaces": [{"operational_status": "Up"}, {"operational_status": "Up"}],
            "portal_url": f"https://security.microsoft.com/machines/{DOC_ID}/overview",
        },
    }


# --- mapping tables ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("risk_score", "level_id", "level"),
    [
        ("None", 0, "Info"),
        ("Informational", 0, "Info"),
        ("Low", 1, "Low"),
        ("Medium", 2, "Medium"),
        ("High", 3, "High"),
        ("high", 3, "High"),
        ("Severe", 99, "Severe"),
    ],
)
def test_risk_score_maps_to_ocsf_risk_level(risk_score: str, level_id: int, level: str) -> None:
    artifact = normalize_machine(machine(riskScore=risk_score))
    assert (artifact["risk_level_id"], artifact["risk_level"]) == (level_id, level)


@pytest.mark.parametrize("risk_score", [None, "", "absent"])
def test_null_or_missing_risk_score_leaves_both_risk_fields_out(risk_score: Any) -> None:
    raw = machine() if risk_score == "absent" else machine(riskScore=risk_score)
    artifact = normalize_machine(raw)
    assert "risk_level_id" not in artifact
    assert "risk_level" not in artifact


@pytest.mark.parametrize(
    ("platform", "type_id", "type_name"),
    [
        ("Windows10", 100, "Windows"),
        ("Windows11", 100, "Windows"),
        ("WindowsServer2016", 100, "Windows"),
        ("WindowsServer2019", 100, "Windows"),
        ("Windows Server 2022", 100, "Windows"),
        ("windows7", 100, "Windows"),
        ("WindowsMobile", 101, "Windows Mobile"),
        ("Linux", 200, "Linux"),
        ("Ubuntu", 200, "Linux"),
        ("RedHatEnterpriseLinux", 200, "Linux"),
        ("CentOS", 200, "Linux"),
        ("Debian", 200, "Linux"),
        ("SuSE", 200, "Linux"),
        ("Android", 201, "Android"),
        ("macOS", 300, "macOS"),
        ("MacOs", 300, "macOS"),
        ("iOS", 301, "iOS"),
        ("IOS", 301, "iOS"),
        ("iPadOS", 302, "iPadOS"),
        ("Cisco IOS", 99, "Other"),
        ("FreeBSD", 99, "Other"),
    ],
)
def test_os_platform_maps_to_ocsf_os_type(platform: str, type_id: int, type_name: str) -> None:
    os = normalize_machine(machine(osPlatform=platform))["os"]
    assert os == {"name": platform, "type_id": type_id, "type": type_name}


@pytest.mark.parametrize(
    ("platform", "type_id", "type_name"),
    [
        ("WindowsServer2019", 1, "Server"),
        ("WindowsServer2022", 1, "Server"),
        ("WindowsServer2012R2", 1, "Server"),
        ("Windows Server 2016", 1, "Server"),
        ("Android", 5, "Mobile"),
        ("iOS", 5, "Mobile"),
        ("iPadOS", 4, "Tablet"),
        ("Windows10", 0, "Unknown"),
        ("Windows11", 0, "Unknown"),
        ("Linux", 0, "Unknown"),
        ("macOS", 0, "Unknown"),
        ("SomethingNew", 0, "Unknown"),
        (None, 0, "Unknown"),
    ],
)
def test_os_platform_maps_to_ocsf_device_type(
    platform: str | None, type_id: int, type_name: str
) -> None:
    artifact = normalize_machine(machine(osPlatform=platform))
    assert (artifact["type_id"], artifact["type"]) == (type_id, type_name)


@pytest.mark.parametrize(
    ("fields", "cpu_bits"),
    [
        ({"osArchitecture": "64-bit"}, 64),
        ({"osArchitecture": "32-bit"}, 32),
        ({"osProcessor": "x64"}, 64),
        ({"osProcessor": "x86"}, 32),
        ({"osProcessor": "ARM64"}, 64),
        ({"osArchitecture": "32-bit", "osProcessor": "x64"}, 32),
        ({"osProcessor": "ARM"}, None),
    ],
)
def test_cpu_bits_come_from_architecture_then_processor(fields: dict, cpu_bits: int | None) -> None:
    os = normalize_machine(machine(osPlatform="Windows10", **fields))["os"]
    assert os.get("cpu_bits") == cpu_bits


def test_old_style_os_version_fills_os_version() -> None:
    artifact = normalize_machine(fixture("old_style"))
    assert artifact["os"]["version"] == "10.0.14393"
    assert artifact["mde"]["agent_version"] == "10.3720.14393.1884"


def test_version_wins_over_old_style_os_version() -> None:
    os = normalize_machine(machine(version="22H2", osVersion="10.0.19045"))["os"]
    assert os["version"] == "22H2"


def test_os_build_becomes_a_string() -> None:
    assert normalize_machine(machine(osBuild=19045))["os"]["build"] == "19045"


def test_os_without_platform_is_named_unknown_as_ocsf_requires_a_name() -> None:
    assert normalize_machine(machine(version="1709"))["os"] == {
        "name": "Unknown",
        "type_id": 0,
        "type": "Unknown",
        "version": "1709",
    }


# --- times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "epoch_ms", "rfc3339"),
    [
        ("2018-08-02T14:55:03.7791856Z", 1533221703779, "2018-08-02T14:55:03.779Z"),
        ("2018-08-02T14:55:03.779185Z", 1533221703779, "2018-08-02T14:55:03.779Z"),
        ("2018-08-02T14:55:03.779Z", 1533221703779, "2018-08-02T14:55:03.779Z"),
        ("2018-08-02T14:55:03.77Z", 1533221703770, "2018-08-02T14:55:03.770Z"),
        ("2018-08-02T14:55:03.7Z", 1533221703700, "2018-08-02T14:55:03.700Z"),
        ("2018-08-02T14:55:03Z", 1533221703000, "2018-08-02T14:55:03.000Z"),
        ("2018-08-02T14:55:03.9999999Z", 1533221703999, "2018-08-02T14:55:03.999Z"),
        ("2018-08-02T14:55:03+00:00", 1533221703000, "2018-08-02T14:55:03.000Z"),
        ("2018-08-02T14:55:03.7791856+00:00", 1533221703779, "2018-08-02T14:55:03.779Z"),
        ("2018-08-02T16:55:03.5+02:00", 1533221703500, "2018-08-02T14:55:03.500Z"),
        ("2018-08-01T23:55:03-15:00", 1533221703000, "2018-08-02T14:55:03.000Z"),
        ("2018-08-02T14:55:03", 1533221703000, "2018-08-02T14:55:03.000Z"),
        ("1970-01-01T00:00:00Z", 0, "1970-01-01T00:00:00.000Z"),
        ("2024-02-29T00:00:00Z", 1709164800000, "2024-02-29T00:00:00.000Z"),
    ],
)
def test_time_forms_become_epoch_ms_and_rfc3339_utc(
    value: str, epoch_ms: int, rfc3339: str
) -> None:
    artifact = normalize_machine(machine(firstSeen=value, lastSeen=value))
    assert artifact["first_seen_time"] == epoch_ms
    assert artifact["first_seen_time_dt"] == rfc3339
    assert artifact["last_seen_time"] == epoch_ms
    assert artifact["last_seen_time_dt"] == rfc3339


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2018-08-02",
        "2018-13-02T14:55:03Z",
        "2023-02-29T14:55:03Z",
        "2018-08-02T24:00:00Z",
        "2018-08-02T14:60:03Z",
        "2018-08-02T14:55:60Z",
        "2018-08-02T14:55:03.Z",
        "2018-08-02T14:55:03+25:00",
        "2018-08-02T14:55:03Zjunk",
        "\uff12\uff10\uff11\uff18-08-02T14:55:03Z",  # fullwidth digits
        1533221703779,
        ["2018-08-02T14:55:03Z"],
        {"time": "2018-08-02T14:55:03Z"},
    ],
)
def test_unparsable_time_is_left_out_not_raised(value: Any) -> None:
    artifact = normalize_machine(machine(firstSeen=value, lastSeen="2018-08-02T14:55:03Z"))
    assert "first_seen_time" not in artifact
    assert "first_seen_time_dt" not in artifact
    assert artifact["last_seen_time"] == 1533221703000


# --- network interfaces -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mac", "expected"),
    [
        ("001122AABBCC", "00:11:22:aa:bb:cc"),
        ("001122aabbcc", "00:11:22:aa:bb:cc"),
        ("00-11-22-AA-BB-CC", "00:11:22:aa:bb:cc"),
        ("00:11:22:AA:BB:CC", "00:11:22:aa:bb:cc"),
        ("00:11:22:aa:bb:cc", "00:11:22:aa:bb:cc"),
    ],
)
def test_mac_formats_become_lowercase_colon_pairs(mac: str, expected: str) -> None:
    raw = machine(ipAddresses=[{"ipAddress": "10.0.0.1", "macAddress": mac}])
    assert normalize_machine(raw)["network_interfaces"] == [{"ip": "10.0.0.1", "mac": expected}]


@pytest.mark.parametrize(
    "mac",
    [
        "",
        "not-a-mac",
        "001122AABB",
        "001122AABBCCDD",
        "00112233445G",
        "00:11-22:33-44:55",
        "0011.22aa.bbcc",
        "00:11:22:33:44:55:",
        "001122334455\n",
        12345,
        ["001122334455"],
        {"mac": "001122334455"},
    ],
)
def test_malformed_mac_is_left_out(mac: Any) -> None:
    raw = machine(ipAddresses=[{"ipAddress": "10.0.0.1", "macAddress": mac}])
    assert normalize_machine(raw)["network_interfaces"] == [{"ip": "10.0.0.1"}]


def test_every_address_becomes_an_interface_in_order() -> None:
    artifact = normalize_machine(fixture("extra_fields"))
    assert artifact["network_interfaces"] == [
        {"ip": "192.0.2.44", "mac": "00:15:5d:01:02:0a", "type_id": 1, "type": "Wired"},
        {"ip": "fe80::215:5dff:fe01:20a", "mac": "00:15:5d:01:02:0a", "type_id": 1,
         "type": "Wired"},
        {"ip": "172.17.0.1", "type_id": 99, "type": "Other"},
    ]
    # Item for item, what OCSF has no attribute for.
    assert artifact["mde"]["network_interfaces"] == [
        {"type": "Ethernet", "operational_status": "Up"},
        {"type": "Ethernet", "operational_status": "Up"},
        {"type": "Other", "operational_status": "Down"},
    ]


@pytest.mark.parametrize(
    ("kind", "type_id", "caption"),
    [
        ("Ethernet", 1, "Wired"),
        ("GigabitEthernet", 1, "Wired"),
        ("Wireless80211", 2, "Wireless"),
        ("Wwanpp", 3, "Mobile"),
        ("Tunnel", 4, "Tunnel"),
        ("tunnel", 4, "Tunnel"),
        ("Ppp", 99, "Ppp"),
        ("Other", 99, "Other"),
    ],
)
def test_interface_type_maps_to_ocsf_type_id_keeping_defenders_word_in_mde(
    kind: str, type_id: int, caption: str
) -> None:
    raw = machine(ipAddresses=[{"ipAddress": "10.0.0.1", "type": kind}])
    artifact = normalize_machine(raw)
    assert artifact["network_interfaces"] == [{"ip": "10.0.0.1", "type_id": type_id,
                                               "type": caption}]
    assert artifact["mde"]["network_interfaces"] == [{"type": kind}]


def test_interface_without_type_or_status_has_no_type_and_no_mde_details() -> None:
    artifact = normalize_machine(machine(ipAddresses=[{"ipAddress": "10.0.0.1"}]))
    assert artifact["network_interfaces"] == [{"ip": "10.0.0.1"}]
    assert "network_interfaces" not in artifact["mde"]


def test_mde_interface_details_stay_aligned_when_one_interface_has_none() -> None:
    raw = machine(ipAddresses=[{"ipAddress": "10.0.0.1"},
                               {"ipAddress": "10.0.0.2", "operationalStatus": "Down"}])
    assert normalize_machine(raw)["mde"]["network_interfaces"] == [
        {}, {"operational_status": "Down"}]


@pytest.mark.parametrize(
    "address",
    [
        {"ipAddress": "127.0.0.1", "macAddress": "000000000000", "type": "Other"},
        {"ipAddress": "127.10.20.30", "macAddress": "001122334455", "type": "Ethernet"},
        {"ipAddress": "::1", "macAddress": None, "type": "SoftwareLoopback"},
        {"ipAddress": "0:0:0:0:0:0:0:1"},
        {"ipAddress": None, "macAddress": None, "type": "SoftwareLoopback"},
        {"ipAddress": "10.0.0.9", "type": "Loopback"},
        {"ipAddress": "", "macAddress": "000000000000"},
        {"ipAddress": "not an ip", "macAddress": None},
        {"ipAddress": None, "macAddress": None, "type": "Ethernet", "operationalStatus": "Up"},
    ],
)
def test_loopbacks_and_entries_naming_no_address_are_left_out(address: dict) -> None:
    raw = machine(ipAddresses=[address, {"ipAddress": "10.0.0.1", "operationalStatus": "Up"}])
    artifact = normalize_machine(raw)
    assert artifact["network_interfaces"] == [{"ip": "10.0.0.1"}]
    assert artifact["mde"]["network_interfaces"] == [{"operational_status": "Up"}]


@pytest.mark.parametrize("mac", ["000000000000", "00-00-00-00-00-00", "00:00:00:00:00:00"])
def test_all_zero_mac_is_left_out_but_its_address_kept(mac: str) -> None:
    raw = machine(ipAddresses=[{"ipAddress": "10.0.0.1", "macAddress": mac}])
    assert normalize_machine(raw)["network_interfaces"] == [{"ip": "10.0.0.1"}]


def test_interface_with_a_mac_and_no_usable_address_keeps_the_mac() -> None:
    raw = machine(ipAddresses=[{"ipAddress": "", "macAddress": "00005E005301"}])
    assert normalize_machine(raw)["network_interfaces"] == [{"mac": "00:00:5e:00:53:01"}]


@pytest.mark.parametrize("ip", ["", "not-an-ip", "10.0.0.256", "10.0.0.1/24", " 10.0.0.1", "?"])
def test_last_ip_address_that_is_no_ip_is_left_out(ip: str) -> None:
    assert "ip" not in normalize_machine(machine(lastIpAddress=ip))


def test_long_ipv6_with_a_zone_is_shortened_to_fit_ocsf() -> None:
    long_form = "fe80:0000:0000:0000:0215:5dff:fe01:020a%12"
    artifact = normalize_machine(machine(lastIpAddress=long_form))
    assert artifact["ip"] == "fe80::215:5dff:fe01:20a%12"


def test_ip_is_left_out_when_last_ip_address_is_missing() -> None:
    raw = machine(ipAddresses=[{"ipAddress": "10.0.0.1", "macAddress": "001122334455"}])
    artifact = normalize_machine(raw)
    assert "ip" not in artifact
    assert artifact["network_interfaces"][0]["ip"] == "10.0.0.1"


# --- groups, names, ids -----------------------------------------------------------------


@pytest.mark.parametrize("group_id", [140, "140"])
def test_group_uid_is_always_a_string(group_id: int | str) -> None:
    artifact = normalize_machine(machine(rbacGroupId=group_id, rbacGroupName="The-A-Team"))
    assert artifact["groups"] == [{"uid": "140", "name": "The-A-Team"}]
    assert artifact["mde"]["rbac_group_id"] == group_id


def test_group_id_zero_is_kept() -> None:
    artifact = normalize_machine(machine(rbacGroupId=0, rbacGroupName=None))
    assert artifact["groups"] == [{"uid": "0"}]


@pytest.mark.parametrize(
    ("dns_name", "hostname", "name"),
    [("chat_Desk ", "chat_Desk", "chat_Desk"), ("  web-01.contoso.com\t", "web-01.contoso.com",
                                                   "web-01")],
)
def test_host_names_are_trimmed(dns_name: str, hostname: str, name: str) -> None:
    artifact = normalize_machine(machine(computerDnsName=dns_name))
    assert (artifact["hostname"], artifact["name"]) == (hostname, name)


def test_blank_host_name_is_left_out() -> None:
    artifact = normalize_machine(machine(computerDnsName="   "))
    assert "hostname" not in artifact
    assert "name" not in artifact


def test_name_is_the_first_label_of_the_dns_name() -> None:
    artifact = normalize_machine(machine(computerDnsName="web-01.eu.contoso.com"))
    assert (artifact["hostname"], artifact["name"]) == ("web-01.eu.contoso.com", "web-01")


def test_misspelled_onboardingstatus_key_is_read() -> None:
    artifact = normalize_machine(machine(onboardingstatus="CanBeOnboarded"))
    assert artifact["mde"]["onboarding_status"] == "CanBeOnboarded"


def test_portal_url_percent_encodes_the_id_and_honours_portal_base() -> None:
    artifact = normalize_machine({"id": "a/b c?"}, portal_base="https://portal.example/")
    assert artifact["mde"]["portal_url"] == "https://portal.example/machines/a%2Fb%20c%3F/overview"


@pytest.mark.parametrize("raw", [{}, {"id": None}, {"id": ""}, {"id": True}, "not a machine"])
def test_machine_without_an_id_is_an_upstream_error(raw: Any) -> None:
    with pytest.raises(UpstreamError):
        normalize_machine(raw)


# --- omitted, never invented ------------------------------------------------------------


def test_null_fields_are_omitted_never_invented() -> None:
    assert normalize_machine(fixture("all_null")) == {
        "uid": "ffffffffffffffffffffffffffffffffffffffff",
        "type_id": 0,
        "type": "Unknown",
        "vendor_name": "Microsoft",
        "mde": {
            "portal_url": "https://security.microsoft.com/machines/"
            "ffffffffffffffffffffffffffffffffffffffff/overview",
        },
    }


def test_missing_fields_are_omitted_never_invented() -> None:
    assert normalize_machine(fixture("sparse")) == {
        "uid": "0000000000000000000000000000000000000001",
        "hostname": "sparse-host",
        "name": "sparse-host",
        "type_id": 0,
        "type": "Unknown",
        "vendor_name": "Microsoft",
        "mde": {
            "portal_url": "https://security.microsoft.com/machines/"
            "0000000000000000000000000000000000000001/overview",
        },
    }


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_no_artifact_holds_a_null(name: str) -> None:
    assert nulls(normalize_machine(fixture(name))) == []


def test_unknown_extra_fields_are_ignored() -> None:
    raw = fixture("extra_fields")
    known = {k: v for k, v in raw.items() if k not in ("@odata.context", "futureField")}
    assert normalize_machine(raw) == normalize_machine(known)


def test_defender_inventory_fields_are_kept_under_mde() -> None:
    raw = machine(defenderAvStatus="NotUpdated", managedBy="Intune", isExcluded=True,
                  exclusionReason="InactiveDevice", isPotentialDuplication=True,
                  mergedIntoMachineId="0e23b8b23abcdefabcdef6f877b45d19c04a522d")
    mde = normalize_machine(raw)["mde"]
    assert {key: mde[key] for key in (
        "defender_av_status", "managed_by", "is_excluded", "exclusion_reason",
        "is_potential_duplicate", "merged_into_machine_id")} == {
        "defender_av_status": "NotUpdated",
        "managed_by": "Intune",
        "is_excluded": True,
        "exclusion_reason": "InactiveDevice",
        "is_potential_duplicate": True,
        "merged_into_machine_id": "0e23b8b23abcdefabcdef6f877b45d19c04a522d",
    }


def test_false_flags_are_kept_and_null_reasons_left_out() -> None:
    raw = machine(isExcluded=False, exclusionReason=None, isPotentialDuplication=False,
                  mergedIntoMachineId=None)
    mde = normalize_machine(raw)["mde"]
    assert (mde["is_excluded"], mde["is_potential_duplicate"]) == (False, False)
    assert "exclusion_reason" not in mde
    assert "merged_into_machine_id" not in mde


def test_vm_metadata_is_kept_without_nulls() -> None:
    raw = machine(vmMetadata={"vmId": "v1", "cloudProvider": "Azure", "resourceId": None})
    assert normalize_machine(raw)["mde"]["vm_metadata"] == {"vmId": "v1", "cloudProvider": "Azure"}


# --- include_raw, immutability, batches -------------------------------------------------


def test_raw_is_absent_unless_asked_for() -> None:
    assert "raw" not in normalize_machine(fixture("doc_example"))["mde"]


def test_include_raw_keeps_the_untouched_input() -> None:
    raw = fixture("extra_fields")
    artifact = normalize_machine(raw, include_raw=True)
    assert artifact["mde"]["raw"] == fixture("extra_fields")


@pytest.mark.parametrize("include_raw", [False, True])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_input_is_not_mutated(name: str, include_raw: bool) -> None:
    raw = fixture(name)
    before = copy.deepcopy(raw)
    normalize_machine(raw, include_raw=include_raw)
    assert raw == before


def test_changing_the_artifact_does_not_change_the_input() -> None:
    raw = fixture("extra_fields")
    artifact = normalize_machine(raw)
    artifact["mde"]["machine_tags"].append("x")
    artifact["mde"]["vm_metadata"]["vmId"] = "x"
    assert raw == fixture("extra_fields")


def test_normalize_machines_keeps_defender_order() -> None:
    raws = [fixture(name) for name in FIXTURE_NAMES]
    artifacts = normalize_machines(raws, portal_base="https://portal.example")
    assert [a["uid"] for a in artifacts] == [r["id"] for r in raws]
    assert all(a["mde"]["portal_url"].startswith("https://portal.example/machines/")
               for a in artifacts)


# --- schema -----------------------------------------------------------------------------


@pytest.mark.parametrize("include_raw", [False, True])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_artifact_validates_against_the_schema(
    validator: Draft202012Validator, name: str, include_raw: bool
) -> None:
    artifact = normalize_machine(fixture(name), include_raw=include_raw)
    assert [error.message for error in validator.iter_errors(artifact)] == []


def test_schema_rejects_an_unknown_top_level_field(validator: Draft202012Validator) -> None:
    artifact = normalize_machine(fixture("doc_example"))
    artifact["surprise"] = 1
    assert not validator.is_valid(artifact)


DEFENDER_KEYS = [
    "computerDnsName", "firstSeen", "lastSeen", "osPlatform", "onboardingStatus",
    "onboardingstatus", "version", "osVersion", "agentVersion", "osProcessor", "osArchitecture",
    "osBuild", "lastIpAddress", "lastExternalIpAddress", "healthStatus", "rbacGroupId",
    "rbacGroupName", "riskScore", "exposureLevel", "deviceValue", "isAadJoined", "aadDeviceId",
    "machineTags", "ipAddresses", "vmMetadata", "defenderAvStatus", "managedBy", "isExcluded",
    "exclusionReason", "isPotentialDuplication", "mergedIntoMachineId",
]


@pytest.mark.parametrize(
    "odd", [{}, {"a": None}, [], [None, 1, {}], 0, 1.5, True, False, "", "?", [["x"]]]
)
def test_oddly_typed_fields_neither_raise_nor_break_the_schema(
    validator: Draft202012Validator, odd: Any
) -> None:
    raw = machine(**dict.fromkeys(DEFENDER_KEYS, odd))
    artifact = normalize_machine(raw, include_raw=True)
    assert [error.message for error in validator.iter_errors(artifact)] == []
    del artifact["mde"]["raw"]
    assert nulls(artifact) == []


# --- real records (tests/corpus/machines) -----------------------------------------------

CORPUS = ROOT / "tests" / "corpus" / "machines"


def corpus_records(name: str) -> list[dict[str, Any]]:
    """A corpus file's records: the file is one record or a `{"value": [...]}` page."""
    data = json.loads((CORPUS / name).read_text(encoding="utf-8"))
    return data.get("value", [data])


def corpus_artifact(name: str) -> dict[str, Any]:
    (record,) = corpus_records(name)
    return normalize_machine(record)


def expected_machines() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "tests" / "corpus" / "expected_machines.yaml").read_text("utf-8"))


@pytest.mark.parametrize("name", sorted(path.name for path in CORPUS.glob("*.json")))
def test_corpus_records_normalize_to_their_ids_and_match_the_schema(
    validator: Draft202012Validator, name: str
) -> None:
    artifacts = normalize_machines(corpus_records(name))
    assert [a["uid"] for a in artifacts] == expected_machines()[name]["ids"]
    for artifact in artifacts:
        assert [error.message for error in validator.iter_errors(artifact)] == []
        assert nulls(artifact) == []


def test_corpus_zero_macs_and_loopbacks_are_left_out() -> None:
    artifact = corpus_artifact("machine_elastic_ubuntu_zero_mac_loopback.json")
    assert artifact["network_interfaces"] == [
        {"ip": "192.168.90.40", "mac": "00:00:5e:00:53:ff", "type_id": 99, "type": "Other"},
        {"ip": "2a02:cf40::", "mac": "00:00:5e:00:53:00", "type_id": 99, "type": "Other"},
    ]
    assert artifact["mde"]["network_interfaces"] == [
        {"type": "Other", "operational_status": "Up"}] * 2


def test_corpus_software_loopbacks_are_left_out() -> None:
    artifact = corpus_artifact("machine_elastic_win2k19_softwareloopback_null_mac.json")
    assert [nic["ip"] for nic in artifact["network_interfaces"]] == [
        "10.50.11.140", "1.128.0.0", "2a02:cf40::"]
    assert {nic["type"] for nic in artifact["network_interfaces"]} == {"Wired"}


def test_corpus_interfaces_down_keep_their_status_under_mde() -> None:
    artifact = corpus_artifact("machine_elastic_win11_interfaces_down.json")
    assert artifact["ip"] == "192.168.92.66"  # lastIpAddress, though no interface has it
    assert [nic["ip"] for nic in artifact["network_interfaces"]] == ["81.2.69.142", "2a02:cf40::"]
    assert [d["operational_status"] for d in artifact["mde"]["network_interfaces"]] == [
        "Down", "Down"]


def test_corpus_empty_ip_address_keeps_the_interface_by_its_mac() -> None:
    artifact = corpus_artifact("machine_elastic_win11_empty_ip_address.json")
    assert artifact["network_interfaces"][0] == {
        "mac": "00:00:5e:00:53:01", "type_id": 1, "type": "Wired"}


def test_corpus_multicast_mac_is_kept_as_sent() -> None:
    artifact = corpus_artifact("machine_elastic_rhel_multicast_mac.json")
    assert artifact["network_interfaces"][0]["mac"] == "01:00:5e:90:10:00"
    assert artifact["hostname"] == "C-Lab-31"
    assert artifact["os"]["type_id"] == 200


def test_corpus_inventory_fields_are_kept_under_mde() -> None:
    mde = corpus_artifact("machine_elastic_win10_intune.json")["mde"]
    assert mde["managed_by"] == "Intune"
    assert (mde["is_excluded"], mde["is_potential_duplicate"]) == (False, False)
    assert "exclusion_reason" not in mde  # null in the record
    assert "merged_into_machine_id" not in mde


def test_corpus_docs_record_without_inventory_fields_has_none_of_them() -> None:
    mde = corpus_artifact("machine_docs_get_by_id.json")["mde"]
    assert not {"managed_by", "defender_av_status", "is_excluded", "is_potential_duplicate",
                "network_interfaces"} & mde.keys()
