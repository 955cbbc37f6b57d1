"""Workplace Graph API calls Vigil makes, with appsecret_proof, retries, pacing and paging.

One request path serves every call. It signs each call made with a token (`appsecret_proof`,
`appsecret_time`), retries throttling and transient faults with jittered backoff (honouring
`Retry-After`), slows down when the usage headers pass 80 %, and turns every failure into a
`WorkplaceError` whose `kind` says what the caller should do.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import requests

from shared.logsafe import quoted
from shared.retry_after import seconds_to_wait
from shared.workplace.signatures import appsecret_params

log = logging.getLogger(__name__)

TIMEOUT = (5, 15)  # connect, read
# The code exchange is made while the admin's browser waits on the callback, and a code is
# single-use: one attempt, 5 s to connect and 5 s for the answer, never resent.
EXCHANGE_TIMEOUT = (5.0, 5.0)
USAGE_SLOWDOWN_PERCENT = 80
USAGE_HEADERS = ("x-app-usage", "x-business-use-case-usage", "x-page-usage")


class FailureKind(StrEnum):
    """What a failed call means for the caller (workplace-api.md §10)."""

    THROTTLED = "throttled"  # 429, codes 4, 17, 32, 341, 613: back off, retry
    TRANSIENT = "transient"  # 5xx, codes 1, 2: back off, retry
    UNREACHABLE = "unreachable"  # no HTTP answer at all (DNS, refused, timeout)
    REAUTH = "reauth"  # 190 (not 458), 102: the token is no good, reinstall
    UNINSTALLED = "uninstalled"  # 190 with subcode 458: the app is not installed
    GONE = "gone"  # 404 / 410, or the node does not exist (100/33)
    PERMISSION = "permission"  # 10, 200-299: a permission is missing
    INVALID = "invalid"  # anything else: a bug or a bad request, do not retry


RETRYABLE = frozenset({FailureKind.THROTTLED, FailureKind.TRANSIENT, FailureKind.UNREACHABLE})
THROTTLE_CODES = frozenset({4, 17, 32, 341, 613})
TRANSIENT_CODES = frozenset({1, 2})


def classify(status: int, code: int | None, subcode: int | None) -> FailureKind:
    if code == 190 and subcode == 458:
        return FailureKind.UNINSTALLED
    if code in (190, 102):
        return FailureKind.REAUTH
    if code in THROTTLE_CODES or status == 429:
        return FailureKind.THROTTLED
    if code in TRANSIENT_CODES or status >= 500:
        return FailureKind.TRANSIENT
    if code == 10 or (code is not None and 200 <= code <= 299):
        return FailureKind.PERMISSION
    if status in (404, 410) or (code == 100 and subcode == 33):
        return FailureKind.GONE
    if status == 0:
        return FailureKind.UNREACHABLE
    return FailureKind.INVALID


class WorkplaceError(RuntimeError):
    """A Workplace Graph error; the message never contains a token or secret."""

    def __init__(
        self,
        status: int,
        code: int | None,
        subcode: int | None,
        message: str,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"Workplace API error {code} (HTTP {status}): {message}")
        self.status, self.code, self.subcode = status, code, subcode
        self.kind = classify(status, code, subcode)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Community:
    id: str
    name: str
    install_id: str
    permissions: tuple[str, ...]
    install_type: str


@dataclass(frozen=True)
class Page:
    """One page of an edge: its rows and the cursor of the next page (None: this was the last)."""

    data: list[dict[str, Any]]
    after: str | None


@dataclass
class RetryPolicy:
    """Jittered exponential backoff; a wait longer than `max_wait` is left to the next run."""

    attempts: int = 4
    base: float = 1.0
    cap: float = 30.0
    max_wait: float = 60.0
    slow_code_factor: float = 4.0  # 341 (application limit) waits longer
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, error: WorkplaceError) -> float:
        if error.retry_after is not None:
            return error.retry_after
        ceiling = min(self.cap, self.base * 2**attempt)
        if error.code == 341:
            ceiling = min(self.cap * self.slow_code_factor, ceiling * self.slow_code_factor)
        return self.rng.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never in step


def usage_percent(headers: dict[str, str]) -> tuple[float, float | None]:
    """Highest usage percentage in the usage headers, and any advised wait (seconds)."""
    highest, wait = 0.0, None
    for name in USAGE_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        try:
            parsed = json.loads(raw)
        except ValueError:
            continue
        # X-App-Usage: {"call_count": 85, ...}; X-Business-Use-Case-Usage: {"<id>": [{...}]}.
        records: list[Any] = [parsed]
        if isinstance(parsed, dict) and not {"call_count", "total_time"} & parsed.keys():
            records = [r for v in parsed.values() if isinstance(v, list) for r in v]
        for record in records:
            if not isinstance(record, dict):
                continue
            for key in ("call_count", "total_cputime", "total_time"):
                value = record.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    highest = max(highest, float(value))
            regain = record.get("estimated_time_to_regain_access")
            if isinstance(regain, int | float) and regain > 0:
                wait = max(wait or 0.0, float(regain) * 60)  # minutes
    return highest, wait


def pacing_delay(percent: float, advised: float | None, max_pause: float) -> float:
    """How long to wait before the next call: nothing below 80 %, up to `max_pause` at 100 %."""
    if percent < USAGE_SLOWDOWN_PERCENT:
        return 0.0
    if percent >= 100 and advised:
        return min(advised, max_pause)
    share = min(1.0, (percent - USAGE_SLOWDOWN_PERCENT) / (100 - USAGE_SLOWDOWN_PERCENT))
    return max(0.5, share * max_pause)


class WorkplaceClient:
    def __init__(
        self,
        graph_url: str,
        app_id: str,
        app_secret: str,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
        max_pause: float = 10.0,
        exchange_timeout: tuple[float, float] = EXCHANGE_TIMEOUT,
    ) -> None:
        self._url = graph_url.rstrip("/")
        self._app_id, self._secret = app_id, app_secret
        self._session = session or requests.Session()
        self._clock = clock
        self.retry = retry or RetryPolicy()
        self._max_pause = max_pause
        self.exchange_timeout = exchange_timeout  # (connect, read) seconds
        self._pause = 0.0  # owed before the next call because usage passed 80 %
        self.calls = 0  # HTTP requests sent, retries included

    def _get(self, path: str, params: dict[str, str], token: str | None = None) -> dict[str, Any]:
        return self._request("GET", path, params, token)

    def _request(
        self, method: str, path: str, params: dict[str, str], token: str | None = None
    ) -> dict[str, Any]:
        """One call, retried while it is throttled or transient and the waits stay short."""
        attempt = 0
        while True:
            try:
                return self._send(method, path, params, token)
            except WorkplaceError as exc:
                attempt += 1
                if exc.kind not in RETRYABLE or attempt >= self.retry.attempts:
                    raise
                wait = self.retry.delay(attempt, exc)
                if wait > self.retry.max_wait:
                    raise  # carries retry_after: the next run resumes where this one stopped
                log.info(
                    "workplace: %s %s failed (%s), retry %d in %.1f s",
                    method,
                    quoted(path),
                    exc.kind,
                    attempt,
                    wait,
                    extra={"code": exc.code, "status": exc.status},
                )
                self.retry.sleep(wait)

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        token: str | None,
        *,
        form: dict[str, str] | None = None,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> dict[str, Any]:
        if self._pause:
            pause, self._pause = self._pause, 0.0
            log.info("workplace: usage above %d %%, pausing %.1f s", USAGE_SLOWDOWN_PERCENT, pause)
            self.retry.sleep(pause)
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
            if self._secret:
                # Backdated by 5 s as Meta's reference app does, against clock skew.
                stamp = int(self._clock()) - 5
                params = {**params, **appsecret_params(token, self._secret, stamp)}
        self.calls += 1
        try:
            resp = self._session.request(
                method,
                f"{self._url}{path}",
                params=params,
                data=form,
                headers=headers,
                timeout=timeout,
            )
        except requests.RequestException as exc:
            # The exception text may hold the URL with its query (the proof, never the token).
            raise WorkplaceError(
                0, None, None, f"{method} {path}: no answer ({type(exc).__name__})"
            ) from None
        percent, advised = usage_percent({k.lower(): v for k, v in resp.headers.items()})
        self._pause = pacing_delay(percent, advised, self._max_pause)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400 or not isinstance(body, dict) or "error" in body:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            err = err if isinstance(err, dict) else {}
            code, subcode = err.get("code"), err.get("error_subcode")
            raise WorkplaceError(
                resp.status_code,
                code if isinstance(code, int) else None,
                subcode if isinstance(subcode, int) else None,
                str(err.get("message") or f"unexpected response to {method} {path}")[:500],
                retry_after=seconds_to_wait(resp.headers.get("Retry-After"), self._clock()),
            )
        return body

    def exchange_code(self, code: str, redirect_uri: str) -> str:
        """The install's access token for a one-time install `code`: one POST, never retried.

        The parameters go in the form body, so the app secret and the code are in no URL (and so
        in no log line or dependency span). A timeout raises UNREACHABLE: the code may have been
        used by then, so the admin starts the install again rather than Vigil sending it twice.
        """
        form = {
            "client_id": self._app_id,
            "client_secret": self._secret,
            "redirect_uri": redirect_uri,
            "code": code,
        }
        body = self._send(
            "POST", "/oauth/access_token", {}, None, form=form, timeout=self.exchange_timeout
        )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise WorkplaceError(200, None, None, "code exchange returned no access_token")
        return token

    def community(self, token: str) -> Community:
        """The token's community; a custom integration's answer has no `install`."""
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

    def page(
        self,
        path: str,
        token: str,
        *,
        fields: str,
        after: str | None = None,
        limit: int = 100,
    ) -> Page:
        """One page of an edge, resuming after a saved cursor (workplace-api.md §7)."""
        params = {"fields": fields, "limit": str(limit)}
        if after:
            params["after"] = after
        body = self._get(path, params, token)
        data = body.get("data")
        if not isinstance(data, list):
            raise WorkplaceError(200, None, None, f"GET {path}: the answer has no `data` list")
        paging = body.get("paging") if isinstance(body.get("paging"), dict) else {}
        assert isinstance(paging, dict)
        cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
        assert isinstance(cursors, dict)
        cursor = cursors.get("after")
        has_next = bool(paging.get("next")) and isinstance(cursor, str) and bool(cursor)
        return Page([r for r in data if isinstance(r, dict)], str(cursor) if has_next else None)

    def logout_user(self, token: str, user_id: str) -> None:
        """Log the user out of Workplace everywhere (`POST /{id}/logout`)."""
        self._request("POST", f"/{user_id}/logout", {}, token)

    def account_active(self, token: str, user_id: str) -> bool:
        """Whether the account is active now (`GET /{id}?fields=active`)."""
        body = self._get(f"/{user_id}", {"fields": "id,active"}, token)
        return body.get("active") is not False

    def set_active(self, token: str, user_id: str, active: bool) -> None:
        """Deactivate (or reactivate) the account (`POST /{id}?active=false|true`)."""
        self._request("POST", f"/{user_id}", {"active": "true" if active else "false"}, token)
