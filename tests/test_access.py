"""Who is calling: App Service's principal header, the automation key, and roles."""

from __future__ import annotations

import base64
import json

import pytest

from shared.access import READER, RESPONDER, authorize, caller, decode_principal, encode_principal
from shared.web import Reply

KEY = "a-long-automation-key-1234"


def header(claims: list[dict[str, str]], role_typ: str = "roles") -> str:
    data = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": role_typ}
    return base64.b64encode(json.dumps(data).encode()).decode()


def test_a_principal_as_app_service_writes_it() -> None:
    ws_role = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    raw = header(
        [
            {"typ": "name", "val": "Adele Vance"},
            {"typ": "preferred_username", "val": "adele@contoso.com"},
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "o1"},
            {"typ": ws_role, "val": "Vigil.Reader"},
        ],
        role_typ=ws_role,
    )
    who = decode_principal(raw)
    assert who is not None and (who.name, who.id, who.kind) == ("adele@contoso.com", "o1", "user")
    assert who.may(READER) and not who.may(RESPONDER)
    responder = decode_principal(encode_principal("r@contoso.com", "o2", (RESPONDER,)))
    assert responder is not None and responder.may(READER) and responder.may(RESPONDER)


@pytest.mark.parametrize("raw", ["", "not base64!", base64.b64encode(b"[1]").decode(), header([])])
def test_a_header_that_is_no_principal_is_nobody(raw: str) -> None:
    assert decode_principal(raw) is None


def test_the_header_counts_only_behind_app_service_authentication() -> None:
    forged = {"x-ms-client-principal": encode_principal("m@contoso.com", "m", (RESPONDER,))}
    assert caller(forged, app_service_auth=False, automation_key=KEY) is None
    who = caller(forged, app_service_auth=True, automation_key=KEY)
    assert who is not None and who.name == "m@contoso.com"


@pytest.mark.parametrize(
    ("configured", "sent", "accepted"),
    [
        (KEY, KEY, True),
        (KEY, KEY[:-1], False),
        (None, "", False),
        ("short", "short", False),
        ("@Microsoft.KeyVault(VaultName=v;SecretName=automation-key)",) * 2 + (False,),
    ],
)
def test_the_automation_key(configured: str | None, sent: str, accepted: bool) -> None:
    who = caller({"x-functions-key": sent}, app_service_auth=True, automation_key=configured)
    assert (who is not None and who.kind == "key") == accepted


def test_401_without_anyone_and_403_without_the_role() -> None:
    nobody = authorize({}, READER, app_service_auth=True, automation_key=KEY)
    assert isinstance(nobody, Reply) and nobody.status == 401
    reader = {"x-ms-client-principal": encode_principal("r@contoso.com", "r", (READER,))}
    refused = authorize(reader, RESPONDER, app_service_auth=True, automation_key=KEY)
    assert isinstance(refused, Reply) and refused.status == 403
    assert "Vigil.Responder" in refused.body
