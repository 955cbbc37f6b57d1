"""Microsoft Graph for governance: an app token from MSAL's client-credentials flow, and the calls.

The one place that knows about Entra credentials. Tokens never reach a log or an exception.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msal
import requests

from shared.config import Settings

SCOPE = "https://graph.microsoft.com/.default"
TIMEOUT = (5, 30)
RETRYABLE = frozenset({429, 500, 502, 503, 504})


class GraphError(RuntimeError):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"Graph error {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.request_id, self.retry_after = request_id, retry_after

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE


@dataclass(frozen=True)
class GraphResult:
    status: int
    request_id: str


def _session(settings: Settings) -> requests.Session:
    session = requests.Session()
    if settings.graph_ca_bundle:
        # REQUESTS_CA_BUNDLE in the environment would otherwise override `verify`.
        session.trust_env = False
        session.verify = settings.graph_ca_bundle
    return session


class GraphClient:
    def __init__(self, settings: Settings) -> None:
        tenant, client_id = settings.graph_app()
        self._session = _session(settings)
        credential: Any = settings.graph_client_secret
        if settings.graph_client_certificate_path:
            pem = Path(settings.graph_client_certificate_path).read_text()
            credential = {"private_key": pem, "public_certificate": pem}
        self._client_id, self._credential = client_id, credential
        self._authority = f"{settings.graph_authority_host}/{tenant}"
        # Instance discovery asks login.microsoftonline.com; skip it for any other host.
        self._discovery = settings.graph_authority_host.endswith(".microsoftonline.com")
        self._app: msal.ConfidentialClientApplication | None = None
        self._url = settings.graph_url
        self._lock = threading.Lock()

    def _token(self) -> str:
        try:
            with self._lock:  # one MSAL app per process: its cache makes repeated calls cheap
                if self._app is None:
                    # MSAL reads the authority's OpenID configuration here, over the network.
                    self._app = msal.ConfidentialClientApplication(
                        self._client_id,
                        authority=self._authority,
                        client_credential=self._credential,
                        http_client=self._session,
                        instance_discovery=None if self._discovery else False,
                    )
                result = self._app.acquire_token_for_client(scopes=[SCOPE])
        except (requests.RequestException, ValueError) as exc:
            # Entra unreachable or answering 5xx: transient, so the work is retried later.
            raise GraphError(503, "token_endpoint_unavailable", type(exc).__name__) from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            err = result if isinstance(result, dict) else {}
            raise GraphError(
                401,
                str(err.get("error", "token_error")),
                str(err.get("error_description", ""))[:300],
            )
        return str(token)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> GraphResult:
        headers = {"Authorization": f"Bearer {self._token()}", "x-ms-throttle-priority": "high"}
        try:
            resp = self._session.request(
                method, f"{self._url}{path}", json=body, headers=headers, timeout=TIMEOUT
            )
        except requests.RequestException as exc:
            raise GraphError(503, "unreachable", type(exc).__name__) from None
        request_id = resp.headers.get("request-id", "")
        if 200 <= resp.status_code < 300:
            return GraphResult(resp.status_code, request_id)
        try:
            err = resp.json().get("error", {})
        except ValueError:
            err = {}
        retry_after = resp.headers.get("Retry-After")
        raise GraphError(
            resp.status_code,
            str(err.get("code", "")),
            str(err.get("message", resp.reason))[:500],
            request_id,
            float(retry_after) if retry_after and retry_after.isdigit() else None,
        )

    def get_user(self, user: str) -> dict[str, Any] | None:
        """The Entra user by id or UPN (with accountEnabled), or None when it does not exist."""
        select = "id,userPrincipalName,mail,accountEnabled,onPremisesSyncEnabled"
        try:
            resp = self._session.get(
                f"{self._url}/users/{quote(user, safe='@')}",
                params={"$select": select},
                headers={
                    "Authorization": f"Bearer {self._token()}",
                    "x-ms-throttle-priority": "low",
                },
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise GraphError(503, "unreachable", type(exc).__name__) from None
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise GraphError(resp.status_code, "", resp.reason, resp.headers.get("request-id", ""))
        body: dict[str, Any] = resp.json()
        return body

    def revoke_sessions(self, user: str) -> GraphResult:
        """Require the user to sign in again; any 2xx is success (Graph answers 200, not 204)."""
        return self._call("POST", f"/users/{quote(user, safe='@')}/revokeSignInSessions")
