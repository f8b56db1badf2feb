"""The contact timeline (opt-in, `contact: true`): when each machine touched the indicator,
how often, and through which process, from one advanced hunting query per batch.

It goes into each machine artifact as `mde.contact` (OCSF's Device has no place for it, and
the artifact without `mde` stays an OCSF Device). A machine that hunting saw but Defender's
machines call did not list is added, marked `source: "hunting_only"`. Contact is extra: when
hunting fails (no ThreatHunting.Read.All, throttled, Graph down), each envelope keeps
Defender's answer and says why in `warnings`; the lookup never fails because of it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from integration.errors import PluginError
from integration.lookup.normalize import portal_url
from integration.values.envelope import Envelope
from integration.values.indicators import Indicator, parse

if TYPE_CHECKING:
    from integration.defender.budget import Lane
    from integration.defender.hunting import Contact, HuntingClient

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def with_contact(envelopes: list[Envelope], kind: str, hunting: Callable[[], HuntingClient], *,
                 portal_base: str, lane: Lane = "batch") -> list[Envelope]:
    """The envelopes with contact merged in, after one hunting query for all of them
    (`hunting` builds the client: nothing to hunt, nothing built)."""
    hunted = {position: indicator for position, envelope in enumerate(envelopes)
              if (indicator := _hunted(envelope, kind)) is not None}
    if not hunted:
        return envelopes
    try:
        found, calls = hunting().contacts(
            kind, list({i.value: i for i in hunted.values()}.values()), lane)
    except PluginError as error:
        warning = f"contact timeline unavailable: {error.code}: {error.message}"
        return [_warned(envelope, warning) if position in hunted else envelope
                for position, envelope in enumerate(envelopes)]
    # The calls are shared by the batch: each envelope says how many it took, not its share.
    return [_merged(envelope, found.get(hunted[position].value, []), portal_base, calls)
            if position in hunted else envelope for position, envelope in enumerate(envelopes)]


def _hunted(envelope: Envelope, kind: str) -> Indicator | None:
    """What to hunt for an envelope: its domain, or its file's SHA-1; None after an error or
    for a hash Defender could not resolve to a SHA-1 (the hunting query is by SHA-1)."""
    if envelope.status == "error" or not envelope.indicator:
        return None
    value = envelope.indicator.get("sha1") or envelope.indicator.get("value")
    if kind == "file" and envelope.indicator.get("type") != "sha1" \
            and not envelope.indicator.get("sha1"):
        return None
    try:
        return parse("domain" if kind == "domain" else "file", value)  # type: ignore[arg-type]
    except PluginError:
        return None


def _warned(envelope: Envelope, warning: str) -> Envelope:
    return envelope._replace(warnings=(*envelope.warnings, warning))


def _merged(envelope: Envelope, contacts: list[Contact], portal_base: str,
            hunting_calls: int) -> Envelope:
    machines = merge_contacts(envelope.machines, contacts, portal_base)
    summary = envelope.summary._replace(hunting_calls=hunting_calls)
    if not machines:
        return envelope._replace(summary=summary)
    return envelope._replace(status="success", machines=machines,
                             summary=summary._replace(total_machines=len(machines)))


def merge_contacts(machines: list[dict[str, Any]], contacts: list[Contact],
                   portal_base: str) -> list[dict[str, Any]]:
    """The machines API's artifacts with `mde.contact` where hunting saw them, then the
    devices only hunting saw."""
    by_device = {contact.device_id: contact for contact in contacts}
    merged = []
    for machine in machines:
        contact = by_device.pop(str(machine.get("uid", "")).lower(), None)
        if contact is not None:
            machine = {**machine, "mde": {**machine.get("mde", {}),
                                          "contact": contact_object(contact, "machines_api")}}
        merged.append(machine)
    # The rest were seen only by hunting: the newest contact first, like Defender's list.
    for contact in sorted(by_device.values(), key=lambda c: (-c.last_ms, c.device_id)):
        merged.append(hunting_only_machine(contact, portal_base))
    return merged


def contact_object(contact: Contact, source: str) -> dict[str, Any]:
    """`mde.contact`: times as epoch ms with RFC 3339 twins, like the artifact's own."""
    value: dict[str, Any] = {
        "source": source,
        "first_seen_time": contact.first_ms, "first_seen_time_dt": _rfc3339(contact.first_ms),
        "last_seen_time": contact.last_ms, "last_seen_time_dt": _rfc3339(contact.last_ms),
        "count": contact.events,
    }
    process = {key: text for key, text in (("name", contact.process_name),
                                           ("sha1", _sha1(contact.process_sha1)),
                                           ("command_line", contact.command_line)) if text}
    if process:
        value["process"] = process
    return value


def hunting_only_machine(contact: Contact, portal_base: str) -> dict[str, Any]:
    """The artifact of a machine known only from hunting: what the event rows say, no more."""
    machine: dict[str, Any] = {"uid": contact.device_id}
    if contact.device_name:
        machine["hostname"] = contact.device_name
        machine["name"] = contact.device_name.split(".", 1)[0] or contact.device_name
    machine.update(type_id=0, type="Unknown", vendor_name="Microsoft")
    machine["mde"] = {"portal_url": portal_url(portal_base, contact.device_id),
                      "contact": contact_object(contact, "hunting_only")}
    return machine


def _rfc3339(epoch_ms: int) -> str:
    moment = _EPOCH + dt.timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def _sha1(value: str | None) -> str | None:
    """Only a real SHA-1 is passed on: the schema promises 40 lowercase hex digits."""
    try:
        hashed = parse("file", value or "")
    except PluginError:
        return None
    return hashed.value if hashed.type == "sha1" else None
