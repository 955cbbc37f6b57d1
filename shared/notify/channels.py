"""Sending to a destination: Teams and the generic webhook over HTTPS, e-mail through Graph.

Every failure becomes a `DeliveryError` that says whether a later attempt may succeed and how
long to wait (`Retry-After`), in words that never contain the URL: a Teams webhook's URL is its
credential, so it is never logged, recorded or put in an exception (urllib3's own DEBUG lines
about the request are redacted too).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

import requests

from shared.governance.graph_results import GraphError, GraphResult
from shared.retry_after import seconds_to_wait

TIMEOUT = (5.0, 15.0)  # connect, read (seconds): a slow receiver never holds a worker long
RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
URL_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry")


class DeliveryError(RuntimeError):
    def __init__(self, code: str, message: str, *, retryable: bool, retry_after: float | None):
        super().__init__(message)
        self.code, self.message = code, message
        self.retryable, self.retry_after = retryable, retry_after


class _Redact(logging.Filter):
    """Replaces the secret parts of the notification URLs in a record's message."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hits = [s for s in self.secrets if s in message]
        for secret in hits:
            message = message.replace(secret, "<redacted>")
        if hits:
            record.msg, record.args = message, None
        return True


_REDACT = _Redact()


def redact_url(url: str) -> None:
    """Keep the URL's path and query (where webhook credentials live) out of urllib3's logs."""
    parts = urlsplit(url)
    secret = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(secret) <= 1:
        return
    with _REDACT.lock:
        _REDACT.secrets.add(secret)
        for name in URL_LOGGERS:
            logger = logging.getLogger(name)
            if _REDACT not in logger.filters:
                logger.addFilter(_REDACT)


def post_json(
    session: requests.Session, url: str, body: bytes, headers: dict[str, str], what: str
) -> None:
    """POST the body; 2xx is delivered. Raises DeliveryError (naming `what`, not the URL)."""
    redact_url(url)
    try:
        resp = session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=TIMEOUT,
            allow_redirects=False,  # a redirect would send the body somewhere not configured
        )
    except requests.RequestException as exc:
        raise DeliveryError(
            "unreachable",
            f"{what} unreachable ({type(exc).__name__})",
            retryable=True,
            retry_after=None,
        ) from None
    if 200 <= resp.status_code < 300:
        return
    retryable = resp.status_code in RETRYABLE_HTTP
    wait = seconds_to_wait(resp.headers.get("Retry-After"), time.time())
    raise DeliveryError(
        f"http_{resp.status_code}",
        f"{what} answered HTTP {resp.status_code}",
        retryable=retryable,
        retry_after=wait,
    )


class MailGraph(Protocol):
    """The Graph calls notification mail makes (GraphClient)."""

    def send_mail(
        self, sender: str, to: str, subject: str, html: str, message_id: str
    ) -> GraphResult: ...
    def sent_message(self, sender: str, internet_message_id: str) -> tuple[str | None, str]: ...


class Mailer:
    """Graph sendMail from the governance mailbox, and the Sent Items check before a resend."""

    def __init__(self, graph: Callable[[], MailGraph], sender: str | None) -> None:
        self._graph, self.sender = graph, sender

    def send(self, to: str, subject: str, html: str, message_id: str) -> None:
        if not self.sender:
            raise DeliveryError(
                "not_configured",
                "GOVERNANCE_MAIL_SENDER is not set: it is the mailbox notifications are sent from",
                retryable=False,
                retry_after=None,
            )
        try:
            self._graph().send_mail(self.sender, to, subject, html, message_id)
        except GraphError as exc:
            raise DeliveryError(
                f"graph_{exc.code or exc.status}",
                f"Graph sendMail answered {exc.status} {exc.code}",
                retryable=exc.retryable,
                retry_after=exc.retry_after,
            ) from None

    def already_sent(self, message_id: str) -> bool | None:
        """Whether the mail is in the sender's Sent Items (None: cannot tell)."""
        try:
            found, _ = self._graph().sent_message(self.sender or "", message_id)
        except GraphError as exc:
            if exc.retryable:
                raise DeliveryError(
                    f"graph_{exc.code or exc.status}",
                    f"Graph answered {exc.status} reading Sent Items",
                    retryable=True,
                    retry_after=exc.retry_after,
                ) from None
            return None
        return bool(found)
