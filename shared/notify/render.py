"""What each destination receives for an alert, or for the day's "cap reached" notice (pure)."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

from shared.alerts import to_graph
from shared.config import SEVERITIES
from shared.models import Alert, utc

SIGNATURE_HEADER = "X-Vigil-Signature-256"
DELIVERY_HEADER = "X-Vigil-Delivery"  # the same on every attempt: receivers may deduplicate
GUARDRAIL_PREFIX = "vigil.governance."
MAX_FACTS = 8


def is_guardrail(alert: Alert) -> bool:
    """A governance guardrail alert (protected account, circuit breaker): always notified."""
    return alert.detector_id.startswith(GUARDRAIL_PREFIX)


def wanted(alert: Alert, min_severity: str) -> bool:
    """Whether a new alert is notified at all: guardrails always; else not one stored over its
    policy's daily limit, and only at or above the minimum severity."""
    if is_guardrail(alert):
        return True
    if alert.capped:
        return False
    rank = SEVERITIES.index(alert.severity) if alert.severity in SEVERITIES else 0
    return rank >= SEVERITIES.index(min_severity)


def console_link(console_url: str | None, alert: Alert) -> str | None:
    """The console's page of the alert (its hash route), when the console's address is known."""
    if not console_url:
        return None
    return f"{console_url}#/alert/{quote(alert.id, safe='')}"


def facts(alert: Alert) -> list[tuple[str, str]]:
    """The alert's key facts as (name, value) text, the first few."""
    out = [
        ("Severity", alert.severity),
        ("User", alert.user_email or alert.user_id or "-"),
        ("Detector", alert.detector_id),
        ("Tenant", alert.tenant_id),
        ("First activity", utc(alert.first_activity_time).isoformat()),
        ("Events", str(alert.event_count or len(alert.evidence.activity_ids))),
    ]
    for key, value in list(alert.evidence.facts.items())[:MAX_FACTS]:
        text = ", ".join(map(str, value[:5])) if isinstance(value, list) else str(value)
        out.append((key, text[:200]))
    return out


@dataclass(frozen=True)
class CapNotice:
    """The one message a destination gets when its daily cap is reached."""

    destination: str
    day: date
    cap: int
    alert: Alert  # the first alert over the cap (the notice stands in for it and the rest)

    @property
    def title(self) -> str:
        return f"Vigil: notification cap reached for {self.day.isoformat()}"

    @property
    def text(self) -> str:
        return (
            f"{self.cap} alerts were notified to this {self.destination} destination on "
            f"{self.day.isoformat()} (UTC), the daily cap (NOTIFY_DAILY_CAP). Further alerts of "
            "that day are not notified here: see them in the console or GET /api/alerts."
        )


def webhook_body(alert: Alert, console_url: str | None, notice: CapNotice | None = None) -> bytes:
    """The generic webhook's body: the alert as JSON (Graph security alert model), or the notice."""
    if notice is not None:
        payload: dict[str, Any] = {
            "type": "vigil.notify.cap_reached",
            "destination": notice.destination,
            "day": notice.day.isoformat(),
            "cap": notice.cap,
            "message": notice.text,
        }
    else:
        payload = {
            "type": "vigil.alert",
            "alert": to_graph(alert),
            "consoleUrl": console_link(console_url, alert),
        }
    return json.dumps(payload, sort_keys=True, default=str).encode()


def signature(body: bytes, secret: str) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the exact body bytes with the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str, secret: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(signature(body, secret), header or "")


def teams_card(alert: Alert, console_url: str | None, notice: CapNotice | None = None) -> bytes:
    """A Teams incoming-webhook message carrying one Adaptive Card."""
    if notice is not None:
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": notice.title, "weight": "Bolder", "wrap": True},
            {"type": "TextBlock", "text": notice.text, "wrap": True},
        ]
        link = console_url
    else:
        body = [
            {
                "type": "TextBlock",
                "text": alert.title,
                "size": "Medium",
                "weight": "Bolder",
                "wrap": True,
                "color": "Attention" if alert.severity == "high" else "Warning",
            },
            {
                "type": "TextBlock",
                "text": f"User: {alert.user_email or alert.user_id or '-'}",
                "wrap": True,
            },
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts(alert)]},
        ]
        link = console_link(console_url, alert)
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in Vigil", "url": link}]
    message = {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }
    return json.dumps(message).encode()


@dataclass(frozen=True)
class Mail:
    subject: str
    html: str


def mail(alert: Alert, console_url: str | None, notice: CapNotice | None = None) -> Mail:
    """The SOC's e-mail for an alert (or the notice); every value is HTML-escaped."""
    if notice is not None:
        return Mail(notice.title, f"<p>{html.escape(notice.text)}</p>")
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in facts(alert)
    )
    link = console_link(console_url, alert)
    more = f"<p><a href='{html.escape(link)}'>Open the alert in Vigil</a></p>" if link else ""
    text = (
        f"<h2>{html.escape(alert.title)}</h2><p>{html.escape(alert.description)}</p>"
        f"<table>{rows}</table>{more}"
    )
    return Mail(f"[Vigil {alert.severity}] {alert.title}"[:250], text)
