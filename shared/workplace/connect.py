"""Connecting a Workplace community: install flow, webhook verification and intake, uninstall."""

from __future__ import annotations

import hmac
import html
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlencode

from shared import query_params as q
from shared.inbox import MAX_BODY as INBOX_MAX_BODY
from shared.inbox import BodyTooLarge, WebhookInbox
from shared.installs import InstallStates, InstallStore
from shared.logsafe import quoted
from shared.models import Install
from shared.query_params import BadInput
from shared.secrets import SecretStore
from shared.web import Reply, refuses_bad_input
from shared.workplace import status
from shared.workplace.client import FailureKind, WorkplaceClient, WorkplaceError
from shared.workplace.normalize import SOURCE
from shared.workplace.signatures import (
    InvalidSignedRequest,
    parse_signed_request,
    verify_webhook,
)
from shared.workplace.sync_state import SyncStateStore
from shared.workplace.tokens import secret_name

log = logging.getLogger(__name__)
START_AGAIN = "Start the install again from /api/workplace/install."


# Anonymous routes refuse larger bodies before reading them further: a callback is a GET and an
# uninstall is one short form field; a webhook may be large (the inbox keeps it whole).
MAX_FORM_BODY = 8 * 1024
MAX_FORM_FIELDS = 8
MAX_BODY = {"callback": MAX_FORM_BODY, "uninstall": MAX_FORM_BODY, "webhook": INBOX_MAX_BODY}


def refuse_oversized(action: str, size: int) -> Reply | None:
    """413 when an anonymous route's body is over its limit: checked by the handler before any
    parsing or signature check."""
    limit = MAX_BODY.get(action, MAX_FORM_BODY)
    if size <= limit:
        return None
    return Reply.error(413, f"Request body of {size} bytes is over this route's {limit} bytes.")


MAX_CODE = 2048  # characters in an authorization code (Workplace's are a few hundred)


@dataclass(frozen=True)
class ConnectDeps:
    """What the install flow, the webhook routes and the uninstall callback read and write.

    Each setting is read when a route needs it (a missing one is an error naming it); the
    Workplace client and the secret store are built when first needed.
    """

    app_id: Callable[[], str]  # WORKPLACE_APP_ID (and its secret, set)
    redirect_uri: Callable[[], str]  # WORKPLACE_REDIRECT_URI
    dialog_url: str  # WORKPLACE_DIALOG_URL
    state_ttl: timedelta  # INSTALL_STATE_TTL_SECONDS
    verify_token: Callable[[], str]  # WORKPLACE_WEBHOOK_VERIFY_TOKEN
    app_secret: Callable[[], str]  # WORKPLACE_APP_SECRET: signs webhooks and signed requests
    install_states: InstallStates
    installs: InstallStore
    secrets: Callable[[], SecretStore]
    workplace: Callable[[], WorkplaceClient]
    sync_states: SyncStateStore
    inbox: WebhookInbox


@refuses_bad_input
def start_install(
    deps: ConnectDeps, now: datetime, params: Mapping[str, str] | None = None
) -> Reply:
    """Send the admin to Workplace's install dialog with a fresh single-use `state`."""
    q.known(params or {}, ())
    app_id = deps.app_id()
    redirect_uri = deps.redirect_uri()
    state = deps.install_states.issue(now, deps.state_ttl)
    query = urlencode({"app_id": app_id, "redirect_uri": redirect_uri, "state": state})
    return Reply.redirect(f"{deps.dialog_url}?{query}")


def complete_install(deps: ConnectDeps, params: Mapping[str, str], now: datetime) -> Reply:
    """The install callback: check `state`, exchange `code`, identify the community, store it."""
    try:
        code = _callback_code(deps, params, now)
    except BadInput as bad:
        return _page(400, f"{bad} {START_AGAIN}")
    try:
        token = deps.workplace().exchange_code(code, deps.redirect_uri())
    except WorkplaceError as exc:
        return _install_failed("the code exchange", exc)
    try:
        community = deps.workplace().community(token)
    except WorkplaceError as exc:
        return _install_failed("reading the community", exc)
    deps.secrets().set(secret_name(community.id), token)
    deps.installs.save(
        Install(
            community_id=community.id,
            community_name=community.name,
            install_id=community.install_id,
            mode="install",
            status="active",
            installed_at=now,
            permissions=community.permissions,
            install_type=community.install_type,
            status_changed_at=now,
        )
    )
    # A reinstall starts the install's health afresh.
    deps.sync_states.update(community.id, failures=0, last_error="")
    log.info(
        "installed in community %s (%s), install %s",
        quoted(community.id),
        quoted(community.name),
        quoted(community.install_id),
        extra={"community_id": community.id, "install_id": community.install_id},
    )
    return _page(200, f"Vigil is installed in {community.name} ({community.id}).")


def _callback_code(deps: ConnectDeps, params: Mapping[str, str], now: datetime) -> str:
    """The callback's `code`, once its `state` is consumed; BadInput naming what is wrong."""
    # Workplace's parameters: names we do not read are ignored, not refused.
    if q.text(params, "error"):
        reason = (
            q.text(params, "error_description")
            or q.text(params, "error_reason")
            or q.text(params, "error")
        )
        raise BadInput(f"error: the install was not approved in Workplace: {reason}.")
    code, state = q.text(params, "code", MAX_CODE), q.text(params, "state", key=True)
    if not code:
        raise BadInput("code: the callback carries none.")
    if not state:
        raise BadInput("state: the callback carries none.")
    if not deps.install_states.consume(state, now):
        raise BadInput("state: unknown, used or expired.")
    return code


def _install_failed(step: str, exc: WorkplaceError) -> Reply:
    """504 when Workplace did not answer in time, 502 when it answered with an error: either
    way the code is spent (or may be), so the admin starts again; it is never sent twice."""
    log.warning(
        "install failed at %s: %s",
        step,
        quoted(exc),
        extra={"status": exc.status, "code": exc.code, "kind": str(exc.kind)},
    )
    spent = "An install code is single-use and Vigil does not send it twice."
    if exc.kind is FailureKind.UNREACHABLE:
        return _page(504, f"Workplace did not answer {step} in time. {spent} {START_AGAIN}")
    return _page(502, f"Workplace refused {step}: {exc}. {spent} {START_AGAIN}")


def _page(status: int, message: str) -> Reply:
    """The admin's browser is on the callback: answer with a short HTML page."""
    return Reply(status, f"<!doctype html><p>{html.escape(message)}</p>", "text/html")


@refuses_bad_input
def verify_subscription(deps: ConnectDeps, params: Mapping[str, str]) -> Reply:
    """Workplace's webhook verification GET: echo `hub.challenge` when the token matches."""
    if q.text(params, "hub.mode") != "subscribe":
        raise BadInput("hub.mode: must be subscribe")
    given, expected = q.text(params, "hub.verify_token"), deps.verify_token()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadInput("hub.verify_token: does not match", status=401)
    return Reply(200, q.text(params, "hub.challenge"))


@refuses_bad_input
def report_status(deps: status.StatusDeps, params: Mapping[str, str], now: datetime) -> Reply:
    """`GET /api/workplace/status`: each install's mode, state, sync, lag, counts and errors."""
    q.known(params, ())
    return Reply.json(200, status.report(deps, now))


def receive_webhook(
    deps: ConnectDeps, body: bytes, headers: Mapping[str, str], now: datetime
) -> Reply:
    """Verify the signature over the raw body, then store it whole in one write before 200."""
    secret = deps.app_secret()
    if not verify_webhook(
        body, secret, headers.get("x-hub-signature-256"), headers.get("x-hub-signature")
    ):
        return Reply.error(401, "Missing or invalid X-Hub-Signature-256 / X-Hub-Signature.")
    try:
        deps.inbox.put(SOURCE, body, now)
    except BodyTooLarge as exc:
        return Reply.error(413, str(exc))
    return Reply(200, "EVENT_RECEIVED")


def receive_uninstall(deps: ConnectDeps, body: bytes, now: datetime) -> Reply:
    """Workplace's deauthorization callback: verify `signed_request`, forget the token.

    The install is marked uninstalled and no longer synced; everything collected is kept.
    Repeating it is harmless (Workplace may retry).
    """
    try:
        form = parse_qs(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except ValueError:
        return Reply.error(400, f"The form has more than {MAX_FORM_FIELDS} fields.")
    signed = (form.get("signed_request") or [""])[-1]
    if not signed:
        return Reply.error(400, "Missing form field `signed_request`.")
    try:
        payload = parse_signed_request(signed, deps.app_secret())
    except InvalidSignedRequest as exc:
        return Reply.error(401, str(exc))
    community_id = str(payload.get("community_id") or "")
    if not community_id.isdigit():
        return Reply.error(400, "signed_request carries no numeric `community_id`.")
    install = deps.installs.get(community_id)
    deps.secrets().delete(secret_name(community_id))
    if install is None:
        log.warning("uninstall for unknown community %s", quoted(community_id))
        return Reply.json(200, {"community_id": community_id, "status": "unknown"})
    if install.status != "uninstalled":
        deps.installs.set_status(
            community_id,
            "uninstalled",
            "Uninstalled in Workplace (deauthorization callback); its data is kept.",
            now,
        )
        log.info("uninstalled from community %s", quoted(community_id))
    return Reply.json(200, {"community_id": community_id, "status": "uninstalled"})
