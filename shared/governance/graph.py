"""Microsoft Graph for governance: the calls it makes (the token is graph_auth.py's, the answers
graph_results.py's). Tokens never reach a log or an exception.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from shared.config import GraphSettings
from shared.governance.graph_auth import TokenSource, graph_session, token_source
from shared.governance.graph_results import EntraUser, GraphError, GraphResult
from shared.retry_after import seconds_to_wait

TIMEOUT = (5, 30)
USER_FIELDS = "id,userPrincipalName,mail,accountEnabled,onPremisesSyncEnabled"
BATCH_LIMIT = 20  # requests per Graph `$batch`


def _user_path(user: str) -> str:
    return f"/users/{quote(user, safe='@')}"


def _error_from(status: int, headers: Any, body: Any, reason: str = "") -> GraphError:
    err = body.get("error", {}) if isinstance(body, dict) else {}
    err = err if isinstance(err, dict) else {}
    inner = err.get("innerError") if isinstance(err.get("innerError"), dict) else {}
    assert isinstance(inner, dict)
    # A `$batch` item's headers are JSON, where Retry-After may be a number.
    retry_after = headers.get("Retry-After", headers.get("retry-after"))
    return GraphError(
        status,
        str(err.get("code", "")),
        str(err.get("message", reason))[:500],
        str(headers.get("request-id") or inner.get("request-id") or ""),
        seconds_to_wait(None if retry_after is None else str(retry_after), time.time()),
        str(inner.get("date", "")),
    )


class GraphClient:
    def __init__(self, settings: GraphSettings, tokens: TokenSource | None = None) -> None:
        self._session = graph_session(settings)
        self._tokens = tokens or token_source(settings, self._session)
        self._url = settings.graph_url
        parts = urlsplit(settings.graph_url)
        self._origin = f"{parts.scheme}://{parts.netloc}/"  # v1.0 and beta share it

    def _token(self) -> str:
        return self._tokens.token()

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        priority: str = "high",
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._token()}", "x-ms-throttle-priority": priority}
        try:
            return self._session.request(
                method,
                f"{self._url}{path}",
                json=body,
                params=params,
                headers=headers,
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise GraphError(503, "unreachable", type(exc).__name__) from None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> GraphResult:
        resp = self._send(method, path, body)
        if 200 <= resp.status_code < 300:
            return GraphResult(resp.status_code, resp.headers.get("request-id", ""))
        raise _error_from(resp.status_code, resp.headers, _json(resp), resp.reason)

    # ---------------------------------------------------------------- lookups

    def get_user(self, user: str) -> dict[str, Any] | None:
        """The Entra user by id or UPN (with accountEnabled), or None when it does not exist."""
        resp = self._send("GET", _user_path(user), params={"$select": USER_FIELDS}, priority="low")
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise _error_from(resp.status_code, resp.headers, _json(resp), resp.reason)
        body: dict[str, Any] = resp.json()
        return body

    def get_users(self, users: list[str]) -> dict[str, dict[str, Any] | None]:
        """Several Entra users by id or UPN, in `$batch` requests of BATCH_LIMIT lookups: user ->
        record, or None when it does not exist. A user whose lookup failed otherwise (throttled,
        say) is left out, for the caller to treat as not checked."""
        out: dict[str, dict[str, Any] | None] = {}
        for start in range(0, len(users), BATCH_LIMIT):
            group = users[start : start + BATCH_LIMIT]
            batch = {
                "requests": [
                    {"id": str(i), "method": "GET", "url": f"{_user_path(u)}?$select={USER_FIELDS}"}
                    for i, u in enumerate(group)
                ]
            }
            resp = self._send("POST", "/$batch", batch, priority="low")
            if resp.status_code >= 300:
                raise _error_from(resp.status_code, resp.headers, _json(resp), resp.reason)
            for item in (_json(resp) or {}).get("responses", []):
                index, status = str(item.get("id", "")), int(item.get("status", 0))
                if not index.isdigit() or int(index) >= len(group):
                    continue
                if status == 404:
                    out[group[int(index)]] = None
                elif 200 <= status < 300 and isinstance(item.get("body"), dict):
                    out[group[int(index)]] = item["body"]
        return out

    def find_user(self, email: str) -> EntraUser | None:
        """The Entra user whose UPN or mail is this address, or None when there is none."""
        found = self.get_user(email)
        if found is None:
            escaped = email.replace("'", "''")
            resp = self._send(
                "GET",
                "/users",
                params={"$filter": f"mail eq '{escaped}'", "$select": USER_FIELDS},
                priority="low",
            )
            if resp.status_code >= 400:
                raise _error_from(resp.status_code, resp.headers, _json(resp), resp.reason)
            matches = (_json(resp) or {}).get("value") or []
            found = matches[0] if len(matches) == 1 else None
        if not found:
            return None
        return EntraUser(
            id=str(found["id"]),
            user_principal_name=str(found.get("userPrincipalName") or ""),
            mail=str(found.get("mail") or ""),
            account_enabled=bool(found.get("accountEnabled", True)),
            on_premises_sync_enabled=bool(found.get("onPremisesSyncEnabled") or False),
        )

    # ---------------------------------------------------------------- actions

    def revoke_sessions(self, user: str) -> GraphResult:
        """Require the user to sign in again; any 2xx is success (Graph answers 200, not 204)."""
        return self._call("POST", f"{_user_path(user)}/revokeSignInSessions")

    def set_account_enabled(self, user: str, enabled: bool) -> GraphResult:
        return self._call("PATCH", _user_path(user), {"accountEnabled": enabled})

    def suspend(self, user: str) -> GraphResult:
        """Disable the account, then revoke its sessions: one `$batch`, the revoke depending on
        the disable. A failed item raises its own error (`code` prefixed by the step)."""
        path = _user_path(user)
        json_header = {"Content-Type": "application/json"}
        batch = {
            "requests": [
                {
                    "id": "disable",
                    "method": "PATCH",
                    "url": path,
                    "headers": json_header,
                    "body": {"accountEnabled": False},
                },
                {
                    "id": "revoke",
                    "dependsOn": ["disable"],
                    "method": "POST",
                    "url": f"{path}/revokeSignInSessions",
                    "headers": json_header,
                    "body": {},
                },
            ]
        }
        resp = self._send("POST", "/$batch", batch)
        if resp.status_code >= 300:
            raise _error_from(resp.status_code, resp.headers, _json(resp), resp.reason)
        # Responses come in any order and the outer 200 means nothing: check every item.
        items = {str(r.get("id")): r for r in (_json(resp) or {}).get("responses", [])}
        for step in ("disable", "revoke"):
            item = items.get(step)
            if item is None:
                raise GraphError(502, "batch_incomplete", f"$batch returned no response for {step}")
            status = int(item.get("status", 0))
            if not 200 <= status < 300:
                error = _error_from(status, item.get("headers") or {}, item.get("body"))
                error.code = f"{step}:{error.code}"
                raise error
        return GraphResult(resp.status_code, resp.headers.get("request-id", ""))

    def send_mail(
        self, sender: str, to: str, subject: str, html: str, message_id: str
    ) -> GraphResult:
        """Send from `sender`, kept in its Sent Items under `message_id` (the internet message
        id), where a later attempt looks for it before sending again."""
        message = {
            "subject": subject,
            "body": {"contentType": "HTML", "content": html},
            "toRecipients": [{"emailAddress": {"address": to}}],
            "internetMessageId": message_id,
        }
        body = {"message": message, "saveToSentItems": True}
        return self._call("POST", f"{_user_path(sender)}/sendMail", body)

    # ---------------------------------------------------------------- state checks

    def _read(self, path: str, params: dict[str, str]) -> tuple[Any, str]:
        """A GET's JSON body (None on 404) and its request-id."""
        resp = self._send("GET", path, params=params, priority="high")
        request_id = resp.headers.get("request-id", "")
        if resp.status_code == 404:
            return None, request_id
        if resp.status_code >= 400:
            raise _error_from(resp.status_code, resp.headers, _json(resp), resp.reason)
        return _json(resp), request_id

    def report_page(self, url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """One page of a reporting list (`/auditLogs/...`): a path under GRAPH_URL with its
        query, or an `@odata.nextLink` as Graph gave it (followed verbatim). Raises GraphError."""
        if url.startswith("/"):
            url = f"{self._url}{url}"
        elif not url.startswith(self._origin):
            raise GraphError(400, "foreign_next_link", "a nextLink outside Microsoft Graph")
        headers = {"Authorization": f"Bearer {self._token()}", "x-ms-throttle-priority": "low"}
        try:
            resp = self._session.get(url, params=params, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise GraphError(503, "unreachable", type(exc).__name__) from None
        body = _json(resp)
        if resp.status_code >= 400 or not isinstance(body, dict):
            raise _error_from(resp.status_code, resp.headers, body, resp.reason)
        return body

    def sent_message(self, sender: str, internet_message_id: str) -> tuple[str | None, str]:
        """The id of the message in `sender`'s Sent Items with this internet message id."""
        escaped = internet_message_id.replace("'", "''")
        body, request_id = self._read(
            f"{_user_path(sender)}/mailFolders/sentitems/messages",
            {"$filter": f"internetMessageId eq '{escaped}'", "$select": "id,internetMessageId"},
        )
        if body is None:  # no such mailbox or folder: nothing can be told
            raise GraphError(404, "mailbox_not_found", f"no Sent Items for {sender}", request_id)
        found = (body or {}).get("value") or []
        return (str(found[0].get("id", "")) or "found" if found else None), request_id

    def account_enabled(self, user: str) -> tuple[bool | None, str]:
        """The user's accountEnabled now (None: no such user)."""
        body, request_id = self._read(_user_path(user), {"$select": "id,accountEnabled"})
        if not isinstance(body, dict):
            return None, request_id
        return bool(body.get("accountEnabled", True)), request_id

    def risk_state(self, object_id: str) -> tuple[str, str]:
        """The risky user's riskState now ("none" when Identity Protection has no record)."""
        body, request_id = self._read(
            f"/identityProtection/riskyUsers/{quote(object_id, safe='')}",
            {"$select": "id,riskState"},
        )
        state = body.get("riskState") if isinstance(body, dict) else None
        return str(state or "none"), request_id

    def confirm_compromised(self, object_ids: list[str]) -> GraphResult:
        return self._call(
            "POST", "/identityProtection/riskyUsers/confirmCompromised", {"userIds": object_ids}
        )

    def dismiss_risk(self, object_ids: list[str]) -> GraphResult:
        return self._call("POST", "/identityProtection/riskyUsers/dismiss", {"userIds": object_ids})


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
