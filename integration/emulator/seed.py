"""The emulator's default dataset: a deterministic, realistic-looking Defender tenant.

Built from a fixed random seed so every run, test and demo sees the same machines, and
fast (a few milliseconds) so each emulator start can build it afresh. The constants below
name the entries tests and the demo rely on; everything else is filler shaped like a real
tenant: every platform, every documented machine field, nulls where Defender sends them,
old-style and sparse records, and the machine from Microsoft's documentation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import uuid
from typing import Any

from integration.emulator.events import build_events

TENANT_ID = "3ec7f4a2-5e3c-4da3-a4e2-00243972199d"
TENANT_DOMAIN = "contoso-emulator.onmicrosoft.com"  # also accepted in sign-in paths
SEED = 20240501
# A fixed "now" keeps the data identical from day to day.
REFERENCE_NOW = dt.datetime(2025, 6, 2, 9, 30, tzinfo=dt.timezone.utc)
MACHINE_COUNT = 800

DOCS_MACHINE_ID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
EVIL_DOMAIN = "evil.example"  # 3 machines, one of them riskScore High (and the docs machine)
PHISH_DOMAIN = "phish.example"  # 12 machines
CAPPED_DOMAIN = "contoso-updates.example"  # 700 machines: the answer is capped at 500
CAPPED_DOMAIN_MACHINES = 700
IDN_DOMAIN = "xn--bcher-kva.example"  # 2 machines
IDN_DOMAIN_UNICODE = "bücher.example"
EMPTY_DOMAIN = "quiet.example"  # known to the dataset, no machines
UNKNOWN_DOMAIN = "never-seen.example"  # not in the dataset at all

# SHA-1, SHA-256 and MD5 of one synthetic file each, so the three really belong together.
KNOWN_FILE = {  # 4 machines; its SHA-256 and MD5 resolve to this SHA-1
    "sha1": "c07121aeac933a1896924ebbb35da036e82c4fcd",
    "sha256": "a70012d91604338b8e307bd480d12edd01c83403d1241ac454a0ce063c5122fb",
    "md5": "af503d34f1598c6035b3e236768f43e7",
}
KNOWN_FILE_MACHINES = 4
EMPTY_FILE = {  # known file, seen on no machine
    "sha1": "a8ad1ca2fb3304890971d4b58c8af496ee60a5ee",
    "sha256": "1f308668c2fa094a94884eb3336571d0c323fc9f1004ad5c6d1381b668a999c6",
    "md5": "a4e2174645db3e82590cf01621d344cc",
}
UNKNOWN_FILE = {  # valid hashes the dataset does not hold
    "sha1": "4ce30b0d868c67243c12014b4e425b592f8048b9",
    "sha256": "beeac477e37aefa1c3ce8940b5df3bd6ac13f43860ae04ed08778e29c5534af1",
    "md5": "d166b28774fa23b321b9a36a23e2e8be",
}

# (osPlatform, weight, {version: osBuild or None})
_PLATFORMS: list[tuple[str, int, dict[str, int | None]]] = [
    ("Windows10", 30, {"1809": 17763, "21H2": 19044, "22H2": 19045}),
    ("Windows11", 27, {"22H2": 22621, "23H2": 22631, "24H2": 26100}),
    ("WindowsServer2016", 4, {"1607": 14393}),
    ("WindowsServer2019", 7, {"1809": 17763}),
    ("WindowsServer2022", 8, {"21H2": 20348}),
    ("Linux", 9, {"22.04": None, "20.04": None, "9.3": None, "8.9": None, "12": None}),
    ("macOS", 7, {"13.6": None, "14.5": None, "15.1": None}),
    ("Android", 4, {"13": None, "14": None}),
    ("iOS", 4, {"17.5.1": None, "18.1": None}),
]
_GROUPS = [(140, "The-A-Team"), (81, "Servers"), (96, "Finance"), (212, "Mobile"),
           (57, "Engineering"), (0, "UnassignedGroup")]
_DEPARTMENTS = ["fin", "eng", "hr", "ops", "sales", "legal", "mkt", "it"]
_USERS = ["jdoe", "asmith", "mgarcia", "lchen", "pnovak", "kokafor", "rsingh", "tnguyen",
          "ebrown", "fmuller", "hsato", "ilopez", "oberg", "wkim", "zahmed", "cdubois"]
_SERVER_ROLES = ["sql", "file", "dc", "web", "app", "print", "exch", "ca"]
_LINUX_ROLES = ["web", "k8s-node", "db", "build", "jump", "proxy", "kafka"]
_TAGS = ["VIP", "Finance", "Kiosk", "PCI", "Test", "Contractor", "DMZ", "Legacy"]
_HEALTH = [("Active", 80), ("Inactive", 9), ("ImpairedCommunication", 4),
           ("NoSensorData", 3), ("NoSensorDataImpairedCommunication", 2), ("Unknown", 2)]
_DOMAIN_WORDS = ["cdn", "login", "update", "files", "secure", "mail", "portal", "sync",
                 "metrics", "cloud", "verify", "static", "docs", "pay", "track", "assets",
                 "account", "share", "api", "media", "office", "invoice", "backup", "vpn"]


def build_dataset() -> dict[str, Any]:
    """A fresh copy of the default dataset (machines, domains, files)."""
    rng = random.Random(SEED)
    machines = [_machine(rng, i) for i in range(MACHINE_COUNT - 1)]
    machines.insert(0, _docs_machine())
    by_id = {m["id"]: m for m in machines}
    ids = [m["id"] for m in machines]
    onboarded_windows = [m["id"] for m in machines
                         if str(m.get("osPlatform", "")).startswith("Windows")
                         and m.get("onboardingStatus") == "onboarded"
                         and m["id"] != DOCS_MACHINE_ID]

    evil = [DOCS_MACHINE_ID, *rng.sample(onboarded_windows, 2)]
    by_id[evil[1]]["riskScore"] = "High"
    domains: dict[str, list[str]] = {
        EVIL_DOMAIN: evil,
        PHISH_DOMAIN: rng.sample(ids, 12),
        CAPPED_DOMAIN: rng.sample(ids, CAPPED_DOMAIN_MACHINES),
        IDN_DOMAIN: rng.sample(ids, 2),
        EMPTY_DOMAIN: [],
    }
    tlds = ["example", "test"]
    while len(domains) < 65:
        first, second = rng.sample(_DOMAIN_WORDS, 2)
        name = f"{first}-{second}{rng.choice(['', '', '-cdn', '24', '-eu'])}.{rng.choice(tlds)}"
        if name not in domains and name != UNKNOWN_DOMAIN:
            domains[name] = rng.sample(ids, _int(rng, 1, 40))

    # Defender lists the most recently seen machines first.
    newest_first = {m["id"]: i for i, m in enumerate(
        sorted(machines, key=lambda m: m.get("lastSeen", ""), reverse=True))}
    for name, members in domains.items():
        domains[name] = sorted(members, key=newest_first.__getitem__)

    files = _files(rng, ids)
    for entry in files:
        entry["machines"] = sorted(entry["machines"], key=newest_first.__getitem__)
    # Advanced hunting's event tables, from their own random stream (machines unchanged).
    hunting = build_events(machines, domains, files, now=REFERENCE_NOW, seed=SEED + 1,
                           hunting_only=(EVIL_DOMAIN, KNOWN_FILE["sha1"]))
    return {"machines": machines, "domains": domains, "files": files, "hunting": hunting}


def _docs_machine() -> dict[str, Any]:
    # The example from Microsoft's "Get machine by ID" page, verbatim in content.
    return {
        "id": DOCS_MACHINE_ID,
        "computerDnsName": "mymachine1.contoso.com",
        "firstSeen": "2018-08-02T14:55:03.7791856Z",
        "lastSeen": "2018-08-02T14:55:03.7791856Z",
        "osPlatform": "Windows10",
        "version": "1709",
        "osProcessor": "x64",
        "lastIpAddress": "172.17.230.209",
        "lastExternalIpAddress": "167.220.196.71",
        "osBuild": 18209,
        "healthStatus": "Active",
        "rbacGroupId": 140,
        "rbacGroupName": "The-A-Team",
        "riskScore": "Low",
        "exposureLevel": "Medium",
        "isAadJoined": True,
        "aadDeviceId": "80fe8ff8-2624-418e-9591-41f0491218f9",
        "machineTags": ["test tag 1", "test tag 2"],
    }


def _machine(rng: random.Random, index: int) -> dict[str, Any]:
    platform, versions = _pick_platform(rng)
    version = rng.choice(list(versions))
    host = _hostname(rng, platform, index)
    machine_id = f"{rng.getrandbits(160):040x}"
    style = rng.random()
    if style < 0.02:  # sparse: what a freshly discovered device can look like
        return {"id": machine_id, "computerDnsName": host}

    last_seen = REFERENCE_NOW - dt.timedelta(seconds=_int(rng, 600, 40 * 86400))
    first_seen = last_seen - dt.timedelta(seconds=_int(rng, 3 * 86400, 900 * 86400))
    onboarding = _weighted(rng, [("onboarded", 92), ("CanBeOnboarded", 4),
                                 ("Unsupported", 2), ("InsufficientInfo", 2)])
    joined = platform.startswith("Windows") and rng.random() < 0.7
    group_id, group_name = rng.choice(_GROUPS)
    server = platform.startswith("WindowsServer") or platform == "Linux"
    machine: dict[str, Any] = {
        "id": machine_id,
        "computerDnsName": host,
        "firstSeen": _timestamp(rng, first_seen),
        "lastSeen": _timestamp(rng, last_seen),
        "osPlatform": platform,
        "version": version,
        "osArchitecture": "32-bit" if platform == "Windows10" and rng.random() < 0.08
        else "64-bit",
        "osBuild": versions[version] if rng.random() < 0.95 else None,
        "lastIpAddress": (last_ip := _private_ip(rng)),
        "lastExternalIpAddress": _documentation_ip(rng),
        "healthStatus": _weighted(rng, _HEALTH) if onboarding == "onboarded" else "Unknown",
        "onboardingStatus": onboarding,
        "deviceValue": rng.choice(["High", "Normal"]) if server
        else _weighted(rng, [("Normal", 85), ("Low", 5), ("High", 5), (None, 5)]),
        # Defender has been seen sending the group id as a string.
        "rbacGroupId": str(group_id) if rng.random() < 0.1 else group_id,
        "rbacGroupName": group_name,
        "riskScore": _weighted(rng, [("None", 35), ("Informational", 15), ("Low", 20),
                                     ("Medium", 15), ("High", 5), (None, 10)]),
        "exposureLevel": _weighted(rng, [("None", 5), ("Low", 40), ("Medium", 35),
                                         ("High", 10), (None, 10)]),
        "isAadJoined": joined,
        "aadDeviceId": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if joined else None,
        "machineTags": rng.sample(_TAGS, _weighted(rng, [(0, 60), (1, 30), (2, 10)])),
        "ipAddresses": _interfaces(rng, platform, last_ip),
        "vmMetadata": _vm_metadata(rng, host) if server and rng.random() < 0.5 else None,
    }
    if rng.random() < 0.3:  # newer fields that appear over time
        machine.update(managedBy=rng.choice(["MicrosoftDefenderForEndpoint", "Intune"]),
                       managedByStatus="Success", isPotentialDuplication=False,
                       isExcluded=False, exclusionReason=None, mergedIntoMachineId=None)
    if style > 0.95 and platform.startswith("Windows"):  # the shape of older responses
        build = machine["osBuild"] or 19045
        del machine["osArchitecture"], machine["vmMetadata"]
        machine.update(osProcessor="x64", osVersion=f"10.0.{build}",
                       agentVersion=f"10.{_int(rng, 7000, 8800)}.{build}.{_int(rng, 1, 5000)}")
    return machine


def _pick_platform(rng: random.Random) -> tuple[str, dict[str, int | None]]:
    total = sum(weight for _, weight, _ in _PLATFORMS)
    roll = rng.uniform(0, total)
    for name, weight, versions in _PLATFORMS:
        roll -= weight
        if roll <= 0:
            return name, versions
    return _PLATFORMS[-1][0], _PLATFORMS[-1][2]


def _hostname(rng: random.Random, platform: str, index: int) -> str:
    user = rng.choice(_USERS)
    if platform in ("Windows10", "Windows11"):
        if rng.random() < 0.3:
            suffix = "".join(rng.choice("abcdefghjklmnpqrstuvwxyz0123456789") for _ in range(7))
            return f"desktop-{suffix}.corp.contoso.com"
        kind = rng.choice(["lt", "ws"])
        return f"{kind}-{rng.choice(_DEPARTMENTS)}-{index:04d}.corp.contoso.com"
    if platform.startswith("WindowsServer"):
        return f"srv-{rng.choice(_SERVER_ROLES)}-{index:03d}.corp.contoso.com"
    if platform == "Linux":
        return f"{rng.choice(_LINUX_ROLES)}-{index:03d}.prod.contoso.com"
    if platform == "macOS":
        return f"{user}-mbp-{index:03d}.corp.contoso.com"
    if platform == "iOS":
        return f"{rng.choice(['iphone', 'ipad'])}-{user}-{index:03d}"
    return f"android-{rng.getrandbits(32):08x}"


def _timestamp(rng: random.Random, moment: dt.datetime) -> str:
    # .NET writes seven fraction digits and drops trailing zeros; a few values show that.
    ticks = f"{rng.randrange(10_000_000):07d}"
    if rng.random() < 0.03:
        ticks = ticks[: _int(rng, 1, 6)].rstrip("0") or "0"
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ticks}Z"


def _private_ip(rng: random.Random) -> str:
    host = f"{_int(rng, 0, 255)}.{_int(rng, 2, 254)}"
    return rng.choice([f"10.{_int(rng, 0, 60)}.{host}", f"192.168.{host}",
                       f"172.{_int(rng, 16, 31)}.{host}"])


def _documentation_ip(rng: random.Random) -> str:
    # RFC 5737 ranges: realistic-looking public addresses that belong to nobody.
    prefix = rng.choice(["192.0.2", "198.51.100", "203.0.113"])
    return f"{prefix}.{_int(rng, 1, 254)}"


def _interfaces(rng: random.Random, platform: str, ip: str) -> list[dict[str, Any]]:
    mac = f"{rng.getrandbits(48):012X}"  # Defender's form: 12 upper-case hex digits
    kind = "Wireless80211" if platform in ("macOS", "Android", "iOS") else "Ethernet"
    interfaces: list[dict[str, Any]] = [
        {"ipAddress": ip, "macAddress": mac, "type": kind, "operationalStatus": "Up"},
        {"ipAddress": f"fe80::{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:"
                      f"{rng.getrandbits(16):x}:{rng.getrandbits(16):x}",
         "macAddress": mac, "type": kind, "operationalStatus": "Up"},
    ]
    if platform.startswith("Windows") and rng.random() < 0.3:
        # Some agents omit the interface type.
        link_local = f"169.254.{_int(rng, 0, 255)}.{_int(rng, 1, 254)}"
        interfaces.append({"ipAddress": link_local,
                           "macAddress": f"{rng.getrandbits(48):012X}",
                           "operationalStatus": "Down"})
    return interfaces


def _vm_metadata(rng: random.Random, host: str) -> dict[str, Any]:
    subscription = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    name = host.split(".")[0]
    return {
        "vmId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "cloudProvider": "Azure",
        "resourceId": f"/subscriptions/{subscription}/resourceGroups/rg-prod/providers/"
                      f"Microsoft.Compute/virtualMachines/{name}",
        "subscriptionId": subscription,
    }


def _weighted(rng: random.Random, choices: list[tuple[Any, int]]) -> Any:
    roll = rng.random() * sum(weight for _, weight in choices)
    for value, weight in choices:
        roll -= weight
        if roll < 0:
            return value
    return choices[-1][0]


def _int(rng: random.Random, low: int, high: int) -> int:
    # random.randint is several times slower, and the whole seed must build in milliseconds.
    return low + int(rng.random() * (high - low + 1))


# (file name, publisher/signer, issuer, determinationType, determinationValue, fileType)
_FILE_KINDS: list[tuple[str, str | None, str | None, str, str | None, str | None]] = [
    ("OneDriveSetup.exe", "Microsoft Corporation", "Microsoft Code Signing PCA 2011",
     "Clean", None, "PortableExecutable"),
    ("Teams.exe", "Microsoft Corporation", "Microsoft Code Signing PCA 2011",
     "Clean", None, "PortableExecutable"),
    ("7z.exe", None, None, "Unknown", None, "PortableExecutable"),
    ("putty.exe", "Simon Tatham", "Sectigo Public Code Signing CA R36",
     "Clean", None, "PortableExecutable"),
    ("mimikatz.exe", "Open Source Developer, Benjamin Delpy", "Certum Code Signing CA SHA2",
     "Malware", "HackTool:Win32/Mimikatz.D", "PortableExecutable"),
    ("psexec.exe", "Microsoft Corporation", "Microsoft Code Signing PCA 2011",
     "Pua", "HackTool:Win32/PsExec", "PortableExecutable"),
    ("invoice_0423.js", None, None, "Malware", "TrojanDownloader:JS/Nemucod.A", "Script"),
    ("payload.ps1", None, None, "Malware", "Trojan:PowerShell/Powersploit.M", "Script"),
    ("Q2-report.docm", None, None, "Malware", "TrojanDownloader:O97M/Obfuse.RK!MTB",
     "Document"),
    ("archive.zip", None, None, "Unknown", None, "Archive"),
    ("rclone.exe", None, None, "Pua", "PUA:Win32/Rclone", "PortableExecutable"),
    ("AnyDesk.exe", "philandro Software GmbH",
     "DigiCert Trusted G4 Code Signing RSA4096 SHA384 2021 CA1", "Clean", None,
     "PortableExecutable"),
]


def _files(rng: random.Random, ids: list[str]) -> list[dict[str, Any]]:
    files = [
        _file(rng, "updater_x64.exe", KNOWN_FILE, ("Contoso Updates Ltd", "Contoso Issuing CA",
              "Malware", "Trojan:Win32/Wacatac.B!ml", "PortableExecutable"),
              rng.sample(ids, KNOWN_FILE_MACHINES)),
        _file(rng, "setup_helper.dll", EMPTY_FILE, (None, None, "Unknown", None,
              "PortableExecutable"), []),
        _docs_file(rng.sample(ids, 3)),
    ]
    for number in range(27):
        name, signer, issuer, kind, value, file_type = _FILE_KINDS[number % len(_FILE_KINDS)]
        content = f"mde-enrich emulator seed: file {number} {name}".encode()
        hashes = {"sha1": hashlib.sha1(content).hexdigest(),
                  "sha256": hashlib.sha256(content).hexdigest(),
                  "md5": hashlib.md5(content).hexdigest()}
        files.append(_file(rng, name, hashes, (signer, issuer, kind, value, file_type),
                           rng.sample(ids, _int(rng, 1, 25))))
    return files


def _file(rng: random.Random, name: str, hashes: dict[str, str],
          kind: tuple[str | None, str | None, str, str | None, str | None],
          machines: list[str]) -> dict[str, Any]:
    signer, issuer, determination, value, file_type = kind
    last = REFERENCE_NOW - dt.timedelta(seconds=_int(rng, 3600, 20 * 86400))
    first = last - dt.timedelta(seconds=_int(rng, 86400, 1500 * 86400))
    pe = file_type == "PortableExecutable"
    return {
        **hashes,
        "globalPrevalence": rng.choice([1, 3, 17, 240, 5_812, 180_022, 2_400_113]),
        "globalFirstObserved": _timestamp(rng, first),
        "globalLastObserved": _timestamp(rng, last),
        "size": _int(rng, 2_000, 60_000_000) if pe else _int(rng, 300, 400_000),
        "fileType": file_type,
        "isPeFile": pe,
        "filePublisher": signer,
        "fileProductName": name.rsplit(".", 1)[0] if signer else None,
        "signer": signer,
        "issuer": issuer,
        "signerHash": hashlib.sha1(signer.encode()).hexdigest() if signer else None,
        "isValidCertificate": bool(signer) and determination != "Malware",
        "determinationType": determination,
        "determinationValue": value,
        "machines": machines,
    }


def _docs_file(machines: list[str]) -> dict[str, Any]:
    # The File entity example from Microsoft's documentation (md5 made up: it has none).
    return {
        "sha1": "4388963aaa83afe2042a46a3c017ad50bdcdafb3",
        "sha256": "413c58c8267d2c8648d8f6384bacc2ae9c929b2b96578b6860b5087cd1bd6462",
        "md5": hashlib.md5(b"4388963aaa83afe2042a46a3c017ad50bdcdafb3").hexdigest(),
        "globalPrevalence": 180022,
        "globalFirstObserved": "2017-09-19T03:51:27.6785431Z",
        "globalLastObserved": "2020-01-06T03:59:21.3229314Z",
        "size": 22139496,
        "fileType": "APP",
        "isPeFile": True,
        "filePublisher": "CHENGDU YIWO Tech Development Co., Ltd.",
        "fileProductName": "EaseUS MobiSaver for Android",
        "signer": "CHENGDU YIWO Tech Development Co., Ltd.",
        "issuer": "VeriSign Class 3 Code Signing 2010 CA",
        "signerHash": "6c3245d4a9bc0244d99dff27af259cbbae2e2d16",
        "isValidCertificate": False,
        "determinationType": "Pua",
        "determinationValue": "PUA:Win32/FusionCore",
        "machines": machines,
    }
