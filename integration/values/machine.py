"""The machine artifact as a type: what schemas/machine.schema.json says a machine holds.

TypedDicts, not classes: an artifact travels as the JSON object platforms receive, and
normalizing 10,000 machines must not build 10,000 objects and then turn them into dicts.
The schema stays the contract; tests/test_values.py checks these keys against it.
Each type with required keys is split into a required base and an optional rest (the
Python 3.10 spelling of `Required`/`NotRequired`).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class _OperatingSystemRequired(TypedDict):
    name: str
    type_id: int
    type: str


class OperatingSystem(_OperatingSystemRequired, total=False):
    version: str
    build: str
    cpu_bits: Literal[32, 64]


class Group(TypedDict, total=False):
    uid: str
    name: str


class NetworkInterface(TypedDict, total=False):
    ip: str
    mac: str
    type_id: int
    type: str


class InterfaceDetails(TypedDict, total=False):
    type: str
    operational_status: str


class Process(TypedDict, total=False):
    name: str
    sha1: str
    command_line: str


class _ContactRequired(TypedDict):
    source: Literal["machines_api", "hunting_only"]
    first_seen_time: int
    first_seen_time_dt: str
    last_seen_time: int
    last_seen_time_dt: str
    count: int


class ContactTimeline(_ContactRequired, total=False):
    process: Process


class _MdeDetailsRequired(TypedDict):
    portal_url: str


class MdeDetails(_MdeDetailsRequired, total=False):
    health_status: str
    exposure_level: str
    device_value: str
    onboarding_status: str
    machine_tags: list[str]
    last_external_ip: str
    rbac_group_id: int | str
    defender_av_status: str
    managed_by: str
    is_excluded: bool
    exclusion_reason: str
    is_potential_duplicate: bool
    merged_into_machine_id: str
    network_interfaces: list[InterfaceDetails]
    is_aad_joined: bool
    os_architecture: str
    os_processor: str
    agent_version: str
    vm_metadata: dict[str, Any]
    contact: ContactTimeline
    raw: dict[str, Any]


class _MachineRequired(TypedDict):
    uid: str
    type_id: int
    type: str
    vendor_name: str
    mde: MdeDetails


class Machine(_MachineRequired, total=False):
    """One Defender machine: OCSF 1.8.0 Device attributes and the `mde` block."""

    hostname: str
    name: str
    ip: str
    os: OperatingSystem
    first_seen_time: int
    first_seen_time_dt: str
    last_seen_time: int
    last_seen_time_dt: str
    risk_level_id: int
    risk_level: str
    groups: list[Group]
    uid_alt: str
    network_interfaces: list[NetworkInterface]
