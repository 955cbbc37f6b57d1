"""What Microsoft Graph answers governance: a call's result, an Entra user, and its errors."""

from __future__ import annotations

from dataclasses import dataclass

RETRYABLE = frozenset({429, 500, 502, 503, 504})


class GraphError(RuntimeError):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str = "",
        retry_after: float | None = None,
        date: str = "",
    ) -> None:
        super().__init__(f"Graph error {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.request_id, self.retry_after, self.date = request_id, retry_after, date

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE


@dataclass(frozen=True)
class GraphResult:
    status: int
    request_id: str


@dataclass(frozen=True)
class EntraUser:
    id: str
    user_principal_name: str
    mail: str
    account_enabled: bool
    on_premises_sync_enabled: bool
