"""Sample Workplace security events for tests, in the documented wire format."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func

from connect_http import workplace_callbacks
from shared.installs import InstallStatus
from shared.models import Install
from shared.services import Services

webhook_fn = workplace_callbacks.build().get_user_function()
COMMUNITY = "504942443827307"
COMPANY = "504942447160640"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def value(
    event: str,
    *,
    actor: str = "100064094363063",
    email: str = "alice@contoso.com",
    at: datetime = T0,
    ip: str = "198.51.100.7",
    country: str = "PL",
    target: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "actor_community_id": COMMUNITY,
        "actor_scim_company_id": COMPANY,
        "actor_id": actor,
        "actor_email": email,
        "target_id": target or actor,
        "target_email": email,
        "ip": ip,
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "event": event,
        "browser_name": "Firefox",
        "browser_os": "Mac OS X 10.15",
        "ip_country": country,
        "useragent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:86.0) Firefox/86.0",
        "target_community_id": COMMUNITY,
        "target_company_id": COMPANY,
        **extra,
    }


def envelope(*changes: tuple[str, dict[str, Any]], time: int = 1617019222) -> bytes:
    body = {
        "object": "workplace_security",
        "entry": [
            {
                "id": COMPANY,
                "time": time,
                "changes": [{"field": f, "value": v} for f, v in changes],
            }
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def failed_logins(
    n: int, *, start: datetime = T0, every: timedelta = timedelta(seconds=20), **kw: Any
) -> list[tuple[str, dict[str, Any]]]:
    return [("login", value("LOGIN_FAILED", at=start + i * every, **kw)) for i in range(n)]


def sign(body: bytes, secret: str) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": "sha256="
        + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def install(
    svc: Services,
    community: str = COMMUNITY,
    *,
    at: datetime = T0 - timedelta(days=30),
    status: InstallStatus = "active",
) -> Install:
    """Vigil installed in `community` (events of a community without one are held, not used)."""
    record = Install(
        community_id=community,
        community_name="Contoso",
        install_id="1",
        mode="install",
        status=status,
        installed_at=at,
        status_changed_at=at,
    )
    svc.installs.save(record)
    return record


def deliver(body: bytes, secret: str) -> None:
    """POST a signed delivery to the webhook handler, as Workplace does; it must answer 200."""
    req = func.HttpRequest(
        "POST",
        "http://127.0.0.1:7071/api/workplace/webhook",
        headers=sign(body, secret),
        body=body,
        route_params={"action": "webhook"},
    )
    assert webhook_fn(req).status_code == 200


def held_rows(svc: Services) -> list[dict[str, Any]]:
    """The held events (without the table's index of communities)."""
    from shared import storage
    from shared.held import INDEX

    rows = svc.storage.table(storage.HELD_EVENTS).list_entities()
    return [e for e in rows if e["PartitionKey"] != INDEX]
