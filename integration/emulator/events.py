"""Advanced hunting event tables for the seeded tenant, consistent with its machines: every
machine a domain lists made network connections to it (DeviceNetworkEvents), and about half
of them also have the DNS answer for it (DeviceEvents, DnsQueryResponse); every machine a
file lists wrote it or ran it (DeviceFileEvents, DeviceProcessEvents), and on some a process
loaded it as a module (DeviceImageLoadEvents).

Deterministic like the rest of the seed (its own random stream, so the machines stay what
they were), timed in the 30 days before the dataset's "now", with one older row per
indicator that a 30-day query must leave out, and one device that only hunting knows.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterable
from typing import Any

# A device with events but no machine record (say, offboarded since): hunting-only.
HUNTING_ONLY_DEVICE_ID = "0badc0ffee0ddf00d0000000000000000000c0de"
HUNTING_ONLY_DEVICE_NAME = "kiosk-lobby-01.corp.contoso.com"
WINDOW_DAYS = 30
_SVCHOST_SHA1 = "a1c7b2d3e4f5061728394a5b6c7d8e9f0a1b2c3d"
_RUNDLL32_SHA1 = "b2d8c3e4f5a6071829304b5c6d7e8f9a0b1c2d3e"

# (file name, SHA-1, command line with {url} or {file}) of the processes that make contact,
# per platform family, so a Linux server's contact is curl, not msedge.exe.
_BROWSERS = {
    "windows": [
        ("msedge.exe", "1c59f1d49b04f8c4f8a7b2d3e4f5a6b7c8d9e0f1",
         '"C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe" '
         '--single-argument {url}'),
        ("chrome.exe", "7d3e5c1b2a4f6e8d0c9b8a7f6e5d4c3b2a1f0e9d",
         '"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe" {url}'),
        ("powershell.exe", "6cbce4a295c163791b60fc23d285e6d84f28ee4c",
         'powershell.exe -NoProfile -WindowStyle Hidden -Command "iwr {url} -UseBasicParsing"'),
    ],
    "linux": [
        ("curl", "d2b7a8f1e0c9b8a7d6e5f4a3b2c1d0e9f8a7b6c5", "curl -fsSL {url}"),
        ("wget", "5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d", "wget -q -O - {url}"),
        ("python3", "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
         "python3 -c \"import urllib.request; urllib.request.urlopen('{url}')\""),
    ],
    "macos": [
        ("Safari", "4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a",
         "/Applications/Safari.app/Contents/MacOS/Safari {url}"),
        ("curl", "d2b7a8f1e0c9b8a7d6e5f4a3b2c1d0e9f8a7b6c5", "curl -fsSL {url}"),
    ],
    "mobile": [
        ("com.android.chrome", "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6",
         "com.android.chrome {url}"),
        ("MobileSafari", "8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b", "MobileSafari {url}"),
    ],
}
_WRITERS = {
    "windows": [
        ("explorer.exe", "ab73e3fbbd3bea1a2a1ffcbbb6e4b8a8f5b1c2d3",
         "C:\\Windows\\Explorer.EXE"),
        ("outlook.exe", "3f0ec4a2b9d8c7e6f5a4b3c2d1e0f9a8b7c6d5e4",
         '"C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE" /eml {file}'),
        ("cmd.exe", "f1d6a4f2c0b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5", "cmd.exe /c start {file}"),
    ],
    "linux": [("bash", "2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b", "bash -c 'chmod +x {file}'")],
    "macos": [("Finder", "7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f",
               "/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder")],
    "mobile": [("com.android.chrome", "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6",
                "com.android.chrome --download {file}")],
}
_FOLDERS = {"windows": "C:\\Users\\Public\\{name}", "linux": "/tmp/{name}",
            "macos": "/Users/Shared/{name}", "mobile": "/sdcard/Download/{name}"}


def _family(machine: dict[str, Any] | None) -> str:
    """The platform family of a machine's record (Windows for one not known)."""
    platform = str((machine or {}).get("osPlatform") or "").lower()
    if "linux" in platform or platform.startswith(("ubuntu", "redhat", "centos", "debian")):
        return "linux"
    if "mac" in platform:
        return "macos"
    if platform in ("android", "ios", "ipados"):
        return "mobile"
    return "windows"


def build_events(machines: list[dict[str, Any]], domains: dict[str, list[str]],
                 files: list[dict[str, Any]], *, now: dt.datetime, seed: int,
                 hunting_only: Iterable[str]) -> dict[str, Any]:
    """The dataset's `hunting` entry: {reference_now, tables: {table: [rows]}}.
    `hunting_only` names the domains and SHA-1s the hunting-only device touched."""
    rng = random.Random(seed)
    names = {m["id"]: m.get("computerDnsName") or m["id"] for m in machines}
    families = {m["id"]: _family(m) for m in machines}
    network: list[dict[str, Any]] = []
    file_rows: list[dict[str, Any]] = []
    process_rows: list[dict[str, Any]] = []
    special = set(hunting_only)
    for domain, members in domains.items():
        devices = [(machine_id, names[machine_id]) for machine_id in members]
        if domain in special:
            devices.append((HUNTING_ONLY_DEVICE_ID, HUNTING_ONLY_DEVICE_NAME))
        for position, (device_id, device_name) in enumerate(devices):
            for moment in _moments(rng, now, old=position == 0):
                name, sha1, command = rng.choice(_BROWSERS[families.get(device_id, "windows")])
                url = _url(rng, domain)
                network.append({
                    "Timestamp": _timestamp(rng, moment), "DeviceId": device_id,
                    "DeviceName": device_name, "ActionType": "ConnectionSuccess",
                    "RemoteUrl": url, "RemoteIP": f"203.0.113.{rng.randrange(1, 255)}",
                    "RemotePort": 443, "InitiatingProcessFileName": name,
                    "InitiatingProcessSHA1": sha1,
                    "InitiatingProcessCommandLine": command.format(url=url),
                })
    for entry in files:
        sha1 = entry["sha1"]
        file_name = str(entry.get("fileProductName") or "sample") + ".exe"
        devices = [(machine_id, names[machine_id]) for machine_id in entry.get("machines", [])]
        if sha1 in special:
            devices.append((HUNTING_ONLY_DEVICE_ID, HUNTING_ONLY_DEVICE_NAME))
        for position, (device_id, device_name) in enumerate(devices):
            moments = _moments(rng, now, old=position == 0)
            written, *ran = moments
            family = families.get(device_id, "windows")
            writer, writer_sha1, command = rng.choice(_WRITERS[family])
            common = {"DeviceId": device_id, "DeviceName": device_name, "SHA1": sha1,
                      "SHA256": entry.get("sha256"), "MD5": entry.get("md5"),
                      "FileName": file_name,
                      "FolderPath": _FOLDERS[family].format(name=file_name)}
            file_rows.append({**common, "Timestamp": _timestamp(rng, written),
                              "ActionType": "FileCreated", "InitiatingProcessFileName": writer,
                              "InitiatingProcessSHA1": writer_sha1,
                              "InitiatingProcessCommandLine": command.format(
                                  file=common["FolderPath"])})
            for moment in ran:
                process_rows.append({**common, "Timestamp": _timestamp(rng, moment),
                                     "ActionType": "ProcessCreated",
                                     "ProcessCommandLine": f'"{file_name}" /quiet',
                                     "InitiatingProcessFileName": _WRITERS[family][0][0],
                                     "InitiatingProcessSHA1": _WRITERS[family][0][1],
                                     "InitiatingProcessCommandLine": _WRITERS[family][0][2]
                                     .format(file=common["FolderPath"])})
    # DNS answers and image loads from a stream of their own: the rows above stay as they were.
    extra = random.Random(seed + 1)
    dns = [row for domain, members in domains.items()
           for row in _dns_rows(extra, domain, [(m, names[m]) for m in members], now)]
    loads = [row for entry in files for row in _image_loads(
        extra, entry, [(m, names[m], families[m]) for m in entry.get("machines", [])], now)]
    return {"reference_now": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tables": {"DeviceNetworkEvents": network, "DeviceFileEvents": file_rows,
                       "DeviceProcessEvents": process_rows, "DeviceEvents": dns,
                       "DeviceImageLoadEvents": loads}}


def _dns_rows(rng: random.Random, domain: str, devices: list[tuple[str, str]],
              now: dt.datetime) -> list[dict[str, Any]]:
    """DeviceEvents' DnsQueryResponse rows: the name asked in AdditionalFields (JSON text,
    as Graph returns it), for about half of the devices."""
    rows = []
    for device_id, device_name in devices:
        if rng.random() < 0.5:
            continue
        name = domain if rng.random() < 0.7 else f"cdn.{domain}"
        for moment in _moments(rng, now, old=False)[:2]:
            answer = f"203.0.113.{rng.randrange(1, 255)}"
            rows.append({"Timestamp": _timestamp(rng, moment), "DeviceId": device_id,
                         "DeviceName": device_name, "ActionType": "DnsQueryResponse",
                         "AdditionalFields": json.dumps({"DnsQueryString": name,
                                                         "DnsQueryResult": [answer]}),
                         "InitiatingProcessFileName": "svchost.exe",
                         "InitiatingProcessSHA1": _SVCHOST_SHA1,
                         "InitiatingProcessCommandLine": "svchost.exe -k NetworkService -p "
                                                         "-s Dnscache"})
    return rows


def _image_loads(rng: random.Random, entry: dict[str, Any],
                 devices: list[tuple[str, str, str]],
                 now: dt.datetime) -> list[dict[str, Any]]:
    """DeviceImageLoadEvents rows on Windows devices, for about a third of them: the file
    loaded as a module by rundll32."""
    rows = []
    file_name = str(entry.get("fileProductName") or "sample") + ".exe"
    for device_id, device_name, family in devices:
        if family != "windows" or rng.random() > 0.33:
            continue
        moment = _moments(rng, now, old=False)[-1]
        rows.append({"Timestamp": _timestamp(rng, moment), "DeviceId": device_id,
                     "DeviceName": device_name, "ActionType": "ImageLoaded",
                     "FileName": file_name, "FolderPath": _FOLDERS[family].format(name=file_name),
                     "SHA1": entry["sha1"], "SHA256": entry.get("sha256"),
                     "MD5": entry.get("md5"), "InitiatingProcessFileName": "rundll32.exe",
                     "InitiatingProcessSHA1": _RUNDLL32_SHA1,
                     "InitiatingProcessCommandLine": f"rundll32.exe {file_name},DllMain"})
    return rows


def _moments(rng: random.Random, now: dt.datetime, *, old: bool) -> list[dt.datetime]:
    """One to four moments in the window, oldest first; with `old`, also one from before it
    (first in the list), which a 30-day query must not count."""
    seconds = sorted(rng.randrange(60, (WINDOW_DAYS - 1) * 86400)
                     for _ in range(1 + int(rng.random() * 4)))
    moments = [now - dt.timedelta(seconds=s) for s in reversed(seconds)]
    if old:
        before = dt.timedelta(days=WINDOW_DAYS + 5, seconds=rng.randrange(20 * 86400))
        moments.insert(0, now - before)
    return moments


def _url(rng: random.Random, domain: str) -> str:
    # RemoteUrl holds a bare host for most connections and a URL for some; a few go to a
    # subdomain, which is contact with the domain too.
    roll = rng.random()
    if roll < 0.6:
        return domain
    if roll < 0.85:
        return f"https://{domain}/{rng.choice(['login', 'dl/update.bin', 'api/v2/sync'])}"
    return f"cdn.{domain}"


def _timestamp(rng: random.Random, moment: dt.datetime) -> str:
    # isoformat and slicing, not strftime: thousands of rows are built at each start.
    return f"{moment.replace(microsecond=0).isoformat()[:19]}.{int(rng.random() * 1e7):07d}Z"
