"""Workplace Graph API calls Vigil makes (code exchange, community), with appsecret_proof."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from shared.workplace.signatures import appsecret_params

TIMEOUT = (5, 15)  # connect, read: the code must be exchanged within Workplace's 300 s window


class WorkplaceError(RuntimeError):
    """A Workplace Graph error; the message never contains a token or secret."""

    def __init__(self, status: int, code: int | None, subcode: int | None, message: str) -> None:
        super().__init__(f"Workplace API error {code} (HTTP {status}): {message}")
        self.status, self.code, self.subcode = status, code, subcode


@dataclass(frozen=True)
class Community:
    id: str
    name: str
    install_id: str
    permissions: tuple[str, ...]
    install_type: str


class WorkplaceClient:
    def __init__(
        self,
        graph_url: str,
        app_id: str,
        app_secret: str,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = graph_url.rstrip("/")
        self._app_id, self._secret = app_id, app_secret
        self._session = session or requests.Session()
        self._clock = clock

    def _get(self, path: str, params: dict[str, str], token: str | None = None) -> dict[str, Any]:
        return self._request("GET", path, params, token)

    def _request(
        self, method: str, path: str, params: dict[str, str], token: str | None = None
    ) -> dict[str, Any]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
            # Backdated by 5 s as Meta's reference app does, against clock skew.
            params = {**params, **appsecret_params(token, self._secret, int(self._clock()) - 5)}
        resp = self._session.request(
            method, f"{self._url}{path}", params=params, headers=headers, timeout=TIMEOUT
        )
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400 or not isinstance(body, dict) or "error" in body:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            err = err if isinstance(err, dict) else {}
            raise WorkplaceError(
                resp.status_code,
                err.get("code"),
                err.get("error_subcode"),
                str(err.get("message") or f"unexpected response to {method} {path}"),
            )
        return body

    def exchange_code(self, code: str, redirect_uri: str) -> str:
        """The install's access token for a one-time install `code`."""
        body = self._get(
            "/oauth/access_token",
            {
                "client_id": self._app_id,
                "client_secret": self._secret,
                "redirect_uri": redirect_uri,
                "code": code,
            },
        )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise WorkplaceError(200, None, None, "code exchange returned no access_token")
        return token

    def community(self, token: str) -> Community:
        body = self._get("/community", {"fields": "id,name,install"}, token)
        install = body.get("install") if isinstance(body.get("install"), dict) else {}
        assert isinstance(install, dict)
        return Community(
            id=str(body["id"]),
            name=str(body.get("name", "")),
            install_id=str(install.get("id", "")),
            permissions=tuple(str(p) for p in install.get("permissions", ())),
            install_type=str(install.get("install_type", "")),
        )

    def logout_user(self, token: str, user_id: str) -> None:
        """Log the user out of Workplace everywhere (`POST /{id}/logout`)."""
        self._request("POST", f"/{user_id}/logout", {}, token)

    def set_active(self, token: str, user_id: str, active: bool) -> None:
        """Deactivate (or reactivate) the account (`POST /{id}?active=false|true`)."""
        self._request("POST", f"/{user_id}", {"active": "true" if active else "false"}, token)
