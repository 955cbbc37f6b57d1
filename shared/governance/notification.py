"""The mail `notify_user` sends: what Vigil saw, and what the person should do now."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from shared.models import Alert


@dataclass(frozen=True)
class Notification:
    subject: str
    html: str


def _when(alert: Alert) -> str:
    first = alert.first_activity_time.strftime("%Y-%m-%d %H:%M UTC")
    last = alert.last_activity_time.strftime("%Y-%m-%d %H:%M UTC")
    return first if first == last else f"between {first} and {last}"


def user_notification(alert: Alert) -> Notification:
    """A plain mail to the person the alert is about (every value HTML-escaped)."""
    facts = alert.evidence.facts
    seen = [f"<li>{escape(alert.description or alert.title)}</li>"]
    seen.append(f"<li>When: {escape(_when(alert))}</li>")
    if isinstance(facts.get("countries"), list) and facts["countries"]:
        seen.append(f"<li>From: {escape(', '.join(str(c) for c in facts['countries']))}</li>")
    if isinstance(facts.get("ips"), list) and facts["ips"]:
        ips = ", ".join(str(ip) for ip in facts["ips"][:10])
        seen.append(f"<li>IP addresses: {escape(ips)}</li>")
    html = (
        "<p>Hello,</p>"
        f"<p>Vigil, your organisation's security monitoring, saw this on your Workplace account "
        f"({escape(alert.user_email or alert.user_id)}):</p>"
        f"<ul>{''.join(seen)}</ul>"
        "<p><b>What to do:</b></p><ul>"
        "<li>If this was you, there is nothing to do; you may be asked to sign in again.</li>"
        "<li>If it was not you, change your password now and make sure multi-factor "
        "authentication is on, then tell your security team, quoting reference "
        f"<code>{escape(alert.id)}</code>.</li>"
        "<li>Do not reply to this mail, and never share your password or codes with anyone, "
        "even if they say they are from IT.</li></ul>"
    )
    return Notification(f"Vigil security notice: {alert.title}", html)
