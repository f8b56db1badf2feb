"""Defender machine entity -> machine artifact (OCSF 1.8.0 Device attributes + an `mde` block).

The artifact's shape is schemas/machine.schema.json. Three rules shape every line here:

- Missing or null input is omitted, never invented: no key in the artifact holds None.
  The exceptions are what OCSF requires: a device's `type_id`, and an `os`'s `name` and
  `type_id`, where "Unknown" (0) is the honest answer when Defender sends no platform.
- The artifact minus `mde` is a valid OCSF 1.8.0 Device (with the `datetime` profile, for
  the `*_dt` twins); whatever OCSF has no attribute for lives in `mde`.
- Defender's answers vary by age and tenant (reference/defender-api.md): unknown extra
  fields, a misspelled key, numbers sent as strings. None of that may raise.

It runs once per machine on answers of up to 10,000 machines, so it avoids per-call regex
compilation, `datetime` parsing and copying; the input is only read, never changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from ipaddress import ip_address
from typing import Any
from urllib.parse import quote

from integration.errors import UpstreamError
from integration.values.short_cache import short_text_cache
from integration.values.times import parse_time

DEFAULT_PORTAL_BASE = "https://security.microsoft.com"
VENDOR_NAME = "Microsoft"

# OCSF risk_level_id: 0 Info, 1 Low, 2 Medium, 3 High, 4 Critical, 99 Other.
_RISK_LEVELS: dict[str, tuple[int, str]] = {
    "none": (0, "Info"),
    "informational": (0, "Info"),
    "low": (1, "Low"),
    "medium": (2, "Medium"),
    "high": (3, "High"),
    "critical": (4, "Critical"),
}

# OCSF device type_id / os type_id values used below.
_DEVICE_UNKNOWN = (0, "Unknown")
_DEVICE_SERVER = (1, "Server")
_DEVICE_TABLET = (4, "Tablet")
_DEVICE_MOBILE = (5, "Mobile")
_OS_UNKNOWN = (0, "Unknown")
# OCSF requires os.name; with no osPlatform there is no better name than the type's caption.
_OS_NAME_UNKNOWN = "Unknown"

# OCSF network_interface type_id for Defender's interface types (the .NET
# NetworkInterfaceType names, compared lowercased). Any other word is 99 "Other" with
# Defender's word as the caption, as OCSF asks for 99.
_INTERFACE_TYPES: dict[str, tuple[int, str]] = {
    **dict.fromkeys(
        ("ethernet", "gigabitethernet", "fastethernett", "fastethernetfx", "ethernet3megabit"),
        (1, "Wired"),
    ),
    "wireless80211": (2, "Wireless"),
    "wwanpp": (3, "Mobile"),  # mobile broadband (GSM, CDMA)
    "wwanpp2": (3, "Mobile"),
    "tunnel": (4, "Tunnel"),
}
_LOOPBACK_TYPES = frozenset(("loopback", "softwareloopback"))
_LOOPBACK = (0, "")  # _interface_type's answer for a loopback type: compared by identity
_OCSF_IP_MAX = 40  # OCSF ip_t maxLength

# Linux distributions Defender may name instead of "Linux"; names holding "linux"
# (OracleLinux, AmazonLinux, RedHatEnterpriseLinux...) are caught by a substring test.
_LINUX_PREFIXES = (
    "ubuntu", "debian", "centos", "fedora", "rhel", "redhat", "suse", "sles", "opensuse",
    "mariner", "alpine", "kali", "mint",
)

# A MAC as 12 hex digits, bare (Defender: 001122AABBCC) or in pairs split by one
# consistent ':' or '-'.
_MAC = re.compile(
    r"([0-9A-Fa-f]{2})([:-]?)([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2"
    r"([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})",
    re.ASCII,
)
_ZERO_MAC = "00:00:00:00:00:00"


def normalize_machines(
    raws: list[dict[str, Any]],
    *,
    include_raw: bool = False,
    portal_base: str = DEFAULT_PORTAL_BASE,
) -> list[dict[str, Any]]:
    """Every machine of a Defender answer, in Defender's order."""
    return [
        normalize_machine(raw, include_raw=include_raw, portal_base=portal_base) for raw in raws
    ]


def normalize_machine(
    raw: dict[str, Any],
    *,
    include_raw: bool = False,
    portal_base: str = DEFAULT_PORTAL_BASE,
) -> dict[str, Any]:
    """One Defender machine entity as a machine artifact.

    Raises UpstreamError when the record is not an object or has no id: without an id
    there is no machine to point an analyst at, and Defender never sends one that way.
    """
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise UpstreamError(f"Defender returned a machine that is not an object but a {kind}")
    get = raw.get
    machine_id = get("id")
    if isinstance(machine_id, int) and not isinstance(machine_id, bool):
        machine_id = str(machine_id)
    if not isinstance(machine_id, str) or not machine_id:
        raise UpstreamError("Defender returned a machine without an id")

    artifact: dict[str, Any] = {"uid": machine_id}

    hostname = get("computerDnsName")
    if hostname and isinstance(hostname, str):
        # Defender keeps the spaces a user typed into a computer name ("chat_Desk ").
        hostname = hostname.strip()
        if hostname:
            artifact["hostname"] = hostname
            name = hostname.partition(".")[0]
            if name:
                artifact["name"] = name

    ip = get("lastIpAddress")
    if ip and isinstance(ip, str):
        address = _address(ip)
        if address:
            artifact["ip"] = address[0]

    platform = get("osPlatform")
    if platform and isinstance(platform, str):
        os_type, device_type = _classify_platform(platform)
    else:
        platform, os_type, device_type = None, _OS_UNKNOWN, _DEVICE_UNKNOWN
    artifact["type_id"], artifact["type"] = device_type

    os = _os(raw, platform, os_type)
    if os:
        artifact["os"] = os

    for source, target in (("firstSeen", "first_seen_time"), ("lastSeen", "last_seen_time")):
        parsed = parse_time(get(source))
        if parsed:
            artifact[target], artifact[target + "_dt"] = parsed

    risk = get("riskScore")
    if risk and isinstance(risk, str):
        level = _RISK_LEVELS.get(risk.lower())
        # OCSF: 99 "Other" carries the source's own word in the caption.
        artifact["risk_level_id"], artifact["risk_level"] = level or (99, risk)

    group_id = get("rbacGroupId")
    if isinstance(group_id, bool) or not isinstance(group_id, (int, str)) or group_id == "":
        group_id = None
    group_name = get("rbacGroupName")
    if not (group_name and isinstance(group_name, str)):
        group_name = None
    if group_id is not None or group_name:
        group: dict[str, str] = {}
        if group_id is not None:
            group["uid"] = str(group_id)
        if group_name:
            group["name"] = group_name
        artifact["groups"] = [group]

    aad_device_id = get("aadDeviceId")
    if aad_device_id and isinstance(aad_device_id, str):
        artifact["uid_alt"] = aad_device_id

    interfaces, details = _interfaces(get("ipAddresses"))
    if interfaces:
        artifact["network_interfaces"] = interfaces

    artifact["vendor_name"] = VENDOR_NAME
    artifact["mde"] = _mde(raw, machine_id, portal_base, include_raw, details)
    return artifact


def _os(raw: dict[str, Any], platform: str | None, os_type: tuple[int, str]) -> dict[str, Any]:
    """OCSF os, or {} when Defender said nothing about the system."""
    get = raw.get
    details: dict[str, Any] = {}
    for key in ("version", "osVersion"):  # osVersion: old responses only
        version = get(key)
        if version and isinstance(version, str):
            details["version"] = version
            break
    build = get("osBuild")
    if isinstance(build, int) and not isinstance(build, bool):
        details["build"] = str(build)
    elif build and isinstance(build, str):
        details["build"] = build
    cpu_bits = _cpu_bits(get("osArchitecture"), get("osProcessor"))
    if cpu_bits:
        details["cpu_bits"] = cpu_bits
    if not (platform or details):
        return details
    type_id, type_name = os_type
    return {"name": platform or _OS_NAME_UNKNOWN, "type_id": type_id, "type": type_name,
            **details}


def _cpu_bits(architecture: Any, processor: Any) -> int | None:
    if architecture and isinstance(architecture, str):
        if architecture.startswith("64"):
            return 64
        if architecture.startswith("32"):
            return 32
    if processor and isinstance(processor, str):
        processor = processor.lower()
        if processor in ("x64", "amd64", "x86_64", "arm64", "aarch64"):
            return 64
        if processor in ("x86", "i386", "i686"):
            return 32
    return None


@lru_cache(maxsize=512)
def _classify_platform(platform: str) -> tuple[tuple[int, str], tuple[int, str]]:
    """(OCSF os type, OCSF device type) for a Defender osPlatform; a few dozen names recur."""
    key = "".join(ch for ch in platform.lower() if ch.isalnum())
    server = "server" in key
    if key.startswith(("windowsmobile", "windowsphone")):
        return (101, "Windows Mobile"), _DEVICE_MOBILE
    if key.startswith("windows"):
        return (100, "Windows"), _DEVICE_SERVER if server else _DEVICE_UNKNOWN
    if key.startswith("android"):
        return (201, "Android"), _DEVICE_MOBILE
    if key.startswith("ipados"):
        return (302, "iPadOS"), _DEVICE_TABLET
    if key.startswith(("ios", "iphoneos")):
        return (301, "iOS"), _DEVICE_MOBILE
    if key.startswith(("macos", "osx", "macintosh")) or key == "mac":
        return (300, "macOS"), _DEVICE_SERVER if server else _DEVICE_UNKNOWN
    if "linux" in key or key.startswith(_LINUX_PREFIXES):
        return (200, "Linux"), _DEVICE_SERVER if server else _DEVICE_UNKNOWN
    return (99, "Other"), _DEVICE_SERVER if server else _DEVICE_UNKNOWN


@short_text_cache(maxsize=4096, max_len=64)
def _mac(value: str) -> str | None:
    """aa:bb:cc:dd:ee:ff from 001122AABBCC, 00-11-22-AA-BB-CC or 00:11:22:aa:bb:cc;
    cached, as a card's MAC repeats for each of its addresses."""
    match = _MAC.fullmatch(value)
    if not match:
        return None
    groups = match.groups()
    return ":".join((groups[0], *groups[2:])).lower()


@short_text_cache(maxsize=4096, max_len=64)
def _address(value: str) -> tuple[str, bool] | None:
    """(the address for OCSF's ip_t, whether it is a loopback) or None for no IP address;
    cached, as addresses repeat across an answer's machines."""
    try:
        parsed = ip_address(value)
    except ValueError:
        return None
    if len(value) > _OCSF_IP_MAX:  # an uncompressed IPv6 with a zone: the short form fits
        value = str(parsed)
        if len(value) > _OCSF_IP_MAX:
            return None
    return value, parsed.is_loopback


def _interfaces(addresses: Any) -> tuple[list[dict[str, Any]], list[dict[str, str]] | None]:
    """Defender's ipAddresses as OCSF network interfaces, and what OCSF has no attribute for
    (None when that is nothing): item i of the second list describes item i of the first."""
    interfaces: list[dict[str, Any]] = []
    details: list[dict[str, str]] = []
    if not (addresses and isinstance(addresses, list)):
        return interfaces, None
    for address in addresses:
        if isinstance(address, dict):
            pair = _interface(address)
            if pair:
                interfaces.append(pair[0])
                details.append(pair[1])
    return interfaces, details if any(details) else None


def _interface(address: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]] | None:
    """(OCSF network interface, Defender-only details) of one ipAddresses entry; None for a
    loopback (never the address anyone outside saw) or an entry naming no address (OCSF
    needs an ip or a mac to point at)."""
    get = address.get
    given = get("type")
    kind = given if given and isinstance(given, str) else None
    ocsf_type = _interface_type(kind) if kind else None
    if ocsf_type is _LOOPBACK:
        return None
    nic: dict[str, Any] = {}
    ip = get("ipAddress")
    if ip and isinstance(ip, str):
        parsed = _address(ip)
        if parsed:
            if parsed[1]:
                return None
            nic["ip"] = parsed[0]
    mac = get("macAddress")
    if mac and isinstance(mac, str):
        mac = _mac(mac)
        if mac and mac != _ZERO_MAC:  # Defender's placeholder for "no hardware address"
            nic["mac"] = mac
    if not nic:
        return None
    extra: dict[str, str] = {}
    if kind and ocsf_type:
        nic["type_id"], nic["type"] = ocsf_type
        extra["type"] = kind
    status = get("operationalStatus")
    if status and isinstance(status, str):
        extra["operational_status"] = status
    return nic, extra


@lru_cache(maxsize=256)
def _interface_type(kind: str) -> tuple[int, str]:
    """(OCSF type_id, caption) of a Defender interface type, or _LOOPBACK."""
    key = kind.lower()
    if key in _LOOPBACK_TYPES:
        return _LOOPBACK
    # 99 "Other" carries Defender's own word, as OCSF asks.
    return _INTERFACE_TYPES.get(key) or (99, kind)


# Defender string fields copied as given into `mde`: (Defender key, artifact key).
_MDE_STRINGS = (
    ("healthStatus", "health_status"),
    ("exposureLevel", "exposure_level"),
    ("deviceValue", "device_value"),
    ("lastExternalIpAddress", "last_external_ip"),
    ("osArchitecture", "os_architecture"),
    ("osProcessor", "os_processor"),
    ("agentVersion", "agent_version"),
    ("defenderAvStatus", "defender_av_status"),
    ("managedBy", "managed_by"),
    ("exclusionReason", "exclusion_reason"),
    ("mergedIntoMachineId", "merged_into_machine_id"),
)

# Defender booleans copied into `mde`: (Defender key, artifact key).
_MDE_BOOLEANS = (
    ("isAadJoined", "is_aad_joined"),
    ("isExcluded", "is_excluded"),
    ("isPotentialDuplication", "is_potential_duplicate"),
)


def _mde(
    raw: dict[str, Any],
    machine_id: str,
    portal_base: str,
    include_raw: bool,
    interfaces: list[dict[str, str]] | None,
) -> dict[str, Any]:
    get = raw.get
    mde: dict[str, Any] = {}
    for source, target in _MDE_STRINGS:
        value = get(source)
        if value and isinstance(value, str):
            mde[target] = value
    # One Microsoft page spells it `onboardingstatus`; real tenants send `onboardingStatus`.
    onboarding = get("onboardingStatus") or get("onboardingstatus")
    if onboarding and isinstance(onboarding, str):
        mde["onboarding_status"] = onboarding
    tags = get("machineTags")
    if tags and isinstance(tags, list):
        tags = [tag for tag in tags if isinstance(tag, str)]
        if tags:
            mde["machine_tags"] = tags
    group_id = get("rbacGroupId")
    if isinstance(group_id, (int, str)) and not isinstance(group_id, bool) and group_id != "":
        mde["rbac_group_id"] = group_id
    for source, target in _MDE_BOOLEANS:
        flag = get(source)
        if isinstance(flag, bool):
            mde[target] = flag
    vm_metadata = _without_nulls(get("vmMetadata"))
    if vm_metadata and isinstance(vm_metadata, dict):
        mde["vm_metadata"] = vm_metadata
    if interfaces:
        mde["network_interfaces"] = interfaces
    mde["portal_url"] = portal_url(portal_base, machine_id)
    if include_raw:
        mde["raw"] = raw
    return mde


def portal_url(portal_base: str, machine_id: str) -> str:
    """The machine's page in the Defender portal of its cloud."""
    # Defender ids are 40 hex characters; quote() only for anything else.
    segment = machine_id
    if not (machine_id.isascii() and machine_id.isalnum()):
        segment = quote(machine_id, safe="")
    return f"{portal_base.rstrip('/')}/machines/{segment}/overview"


def _without_nulls(value: Any) -> Any:
    """A copy of a JSON value without null members or items (the input stays untouched)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


# OCSF risk_level_id 0 Info .. 4 Critical rank; 99 Other (a word Defender made up) does not.
RANKED_RISK_IDS = range(0, 5)


def highest_risk(machines: Iterable[Mapping[str, Any]]) -> tuple[int, str] | None:
    """(risk_level_id, risk_level) of the riskiest machine among ranked levels, or None. The
    one rule for "highest risk", used by playbook summaries and platform verdicts alike."""
    highest: tuple[int, str] | None = None
    for machine in machines:
        level_id = machine.get("risk_level_id")
        if isinstance(level_id, int) and not isinstance(level_id, bool) \
                and level_id in RANKED_RISK_IDS and (highest is None or level_id > highest[0]):
            highest = (level_id, str(machine.get("risk_level", level_id)))
    return highest
