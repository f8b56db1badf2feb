"""Who an answer was fetched for: the application, or one user (signed in with a device code
or through the platform on their behalf). Defender answers a user with the machines of their
own device groups only, so an answer is kept, shared and served per principal.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

PrincipalType = Literal["application", "user"]


class Principal(NamedTuple):
    type: PrincipalType
    id: str  # the app's client id, or the user's object id (oid)
    name: str | None = None  # the user's UPN; an app's display name when the token has one

    @property
    def key(self) -> str:
        """What keys this principal's cached answers, single flights and memos."""
        return f"{self.type}:{self.id}"

    @property
    def is_user(self) -> bool:
        return self.type == "user"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "name": self.name}

    def describe(self) -> str:
        """For people: tables and case notes say whose device groups an answer covers."""
        if self.is_user:
            return f"as {self.name or self.id} (their device groups only)"
        return f"as the application {self.name or self.id} (every device group it may see)"

    @classmethod
    def from_dict(cls, data: Any) -> Principal | None:
        if not isinstance(data, dict) or data.get("type") not in ("application", "user") \
                or not isinstance(data.get("id"), str):
            return None
        name = data.get("name")
        return cls(data["type"], data["id"], name if isinstance(name, str) else None)


def principal_of(claims: dict[str, Any], *, client_id: str) -> Principal:
    """The principal an access token speaks for, from its claims: a delegated token names
    the user (`oid`, `upn`); an app token the application (`appid`)."""
    if claims.get("idtyp") == "user" or ("scp" in claims and "oid" in claims):
        name = claims.get("upn") or claims.get("preferred_username") \
            or claims.get("unique_name")
        return Principal("user", str(claims.get("oid")), str(name) if name else None)
    app_name = claims.get("app_displayname")
    return Principal("application", str(claims.get("appid") or client_id),
                     str(app_name) if app_name else None)
