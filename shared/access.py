"""Who is calling the analyst API and what they may do.

In Azure, App Service Authentication (Microsoft Entra ID) signs analysts in and passes the
principal to the app in `X-MS-CLIENT-PRINCIPAL` (base64 JSON of the token's claims, the app
roles among them); it removes that header from what clients send, so the app trusts it only
when `APP_SERVICE_AUTH` says authentication is on. Automation presents the automation key in
`x-functions-key` instead, and acts as "automation key" with the Responder's rights.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeGuard

from shared.web import Reply

Role = Literal["Vigil.Reader", "Vigil.Responder"]
READER: Final[Role] = "Vigil.Reader"
RESPONDER: Final[Role] = "Vigil.Responder"
ROLES: tuple[Role, ...] = (READER, RESPONDER)

_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_NAME_CLAIMS = ("preferred_username", "upn", "email", "name")
_OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"


@dataclass(frozen=True)
class Principal:
    """The caller: a signed-in person (`user`) or automation holding the key (`key`)."""

    kind: Literal["user", "key"]
    name: str
    id: str
    roles: frozenset[str]

    def may(self, role: Role) -> bool:
        # A Responder also reads: the roles are cumulative.
        return role in self.roles or (role == READER and RESPONDER in self.roles)

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "id": self.id}


MIN_KEY_LENGTH = 16
AUTOMATION = Principal("key", "automation key", "automation", frozenset({RESPONDER}))


def decode_principal(header: str, name_header: str = "", id_header: str = "") -> Principal | None:
    """The principal of an `X-MS-CLIENT-PRINCIPAL` header; None when it is not one."""
    try:
        data = json.loads(base64.b64decode(header, validate=False))
        claims = data["claims"]
        if not isinstance(claims, list):
            return None
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        return None
    role_typ = str(data.get("role_typ") or "")
    name_typ = str(data.get("name_typ") or "")
    values: dict[str, list[str]] = {}
    for claim in claims:
        if isinstance(claim, dict) and isinstance(claim.get("typ"), str):
            values.setdefault(claim["typ"], []).append(str(claim.get("val", "")))
    roles = frozenset(r for typ in (role_typ, *_ROLE_CLAIMS) for r in values.get(typ, ()))
    names = [values[t][0] for t in (*_NAME_CLAIMS, name_typ) if values.get(t)]
    name = name_header or (names[0] if names else "")
    oid = id_header or next(iter(values.get("oid") or values.get(_OID) or []), "")
    if not (name or oid):
        return None
    return Principal("user", name or oid, oid or name, roles)


def encode_principal(name: str, oid: str, roles: tuple[str, ...]) -> str:
    """An `X-MS-CLIENT-PRINCIPAL` as App Service writes it (the local host signs in with it)."""
    claims: list[dict[str, Any]] = [
        {"typ": "preferred_username", "val": name},
        {"typ": "name", "val": name},
        {"typ": _OID, "val": oid},
        *({"typ": "roles", "val": r} for r in roles),
    ]
    data = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(data).encode()).decode()


def caller(
    headers: Mapping[str, str], *, app_service_auth: bool, automation_key: str | None
) -> Principal | None:
    """Who sent a request (headers with lower-case names); None: nobody we know."""
    if app_service_auth and headers.get("x-ms-client-principal"):
        return decode_principal(
            headers["x-ms-client-principal"],
            headers.get("x-ms-client-principal-name", ""),
            headers.get("x-ms-client-principal-id", ""),
        )
    key = headers.get("x-functions-key", "")
    if (
        usable_key(automation_key)
        and key
        and hmac.compare_digest(key.encode(), automation_key.encode())
    ):
        return AUTOMATION
    return None


def usable_key(key: str | None) -> TypeGuard[str]:
    """A key worth comparing: long enough, and not a Key Vault reference App Service could not
    resolve (it would then be the reference text itself, which anyone can read in the Bicep)."""
    return bool(key) and len(key or "") >= MIN_KEY_LENGTH and not (key or "").startswith("@")


def authorize(
    headers: Mapping[str, str], role: Role, *, app_service_auth: bool, automation_key: str | None
) -> Principal | Reply:
    """The caller when they hold `role`; otherwise the 401 or 403 to answer."""
    who = caller(headers, app_service_auth=app_service_auth, automation_key=automation_key)
    if who is None:
        return Reply.error(
            401,
            "sign in (App Service Authentication with Microsoft Entra ID) or send the "
            "automation key in x-functions-key",
        )
    if not who.may(role):
        return Reply.error(403, f"{who.name} does not hold the app role {role}")
    return who


def forgery_safe(who: Principal, headers: Mapping[str, str]) -> bool:
    """Whether a write can be taken as meant by its sender. A browser sends a session cookie on
    any site's cross-site form post; it never adds `Authorization` or `X-Requested-With` there,
    and a cross-site script may add them only after a CORS preflight, which Vigil never allows.
    So a signed-in person's write needs one of the two (the console sends `X-Requested-With`);
    the automation key is itself a header."""
    return who.kind == "key" or bool(
        headers.get("authorization") or headers.get("x-requested-with")
    )
