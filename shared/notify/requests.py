"""The notify queue's message: which stored alert, and (on a retry) which destination."""

from __future__ import annotations

import json
from dataclasses import dataclass

SIEM = "siem"  # not a notification: the alert waits in the SIEM outbox (shared/siem/)
DESTINATIONS = ("email", "teams", "webhook", SIEM)


@dataclass(frozen=True)
class NotifyRequest:
    tenant_id: str
    alert_key: str  # the alert's row key
    destination: str = ""  # empty: every configured one (a retry names the one that failed)

    def to_message(self) -> str:
        body = {"v": 1, "tenant": self.tenant_id, "alert": self.alert_key}
        if self.destination:
            body["destination"] = self.destination
        return json.dumps(body)

    @classmethod
    def from_message(cls, body: bytes) -> NotifyRequest:
        try:
            d = json.loads(body)
            request = cls(str(d["tenant"]), str(d["alert"]), str(d.get("destination", "")))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise ValueError('notify message must be {"tenant", "alert"}') from None
        if request.destination and request.destination not in DESTINATIONS:
            raise ValueError(f"notify message names an unknown destination {request.destination!r}")
        return request
