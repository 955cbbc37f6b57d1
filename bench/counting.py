"""Counts storage transactions exactly, by kind, with an azure-core pipeline policy."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest


def kind_of(method: str, url: str, table_port: int = 10002) -> str:
    """`table.read`, `table.write`, `table.batch`, `queue.put`... for one storage request
    (`table_port`: where Azurite serves tables)."""
    parts = urlsplit(url)
    path = parts.path
    port = parts.port
    table = port == table_port or ".table." in (parts.hostname or "")
    if table:
        if path.endswith("/$batch"):
            return "table.batch"
        if path.rstrip("/").endswith("/Tables") or "/Tables(" in path:
            return "table.admin"
        return "table.read" if method == "GET" else "table.write"
    if "/messages" in path:
        if method == "POST":
            return "queue.put"
        if method == "GET":
            return "queue.get"
        if method == "DELETE":
            return "queue.delete"
        if method == "PUT":
            return "queue.update"
    if "comp=metadata" in parts.query or method == "PUT":
        return "queue.admin"
    return f"other.{method.lower()}"


class StorageCounter:
    """A request hook: append to `shared.storage.REQUEST_HOOKS`, then read `snapshot()`."""

    def __init__(self, table_port: int = 10002) -> None:
        self.table_port = table_port
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __call__(self, request: PipelineRequest[Any]) -> None:
        http = request.http_request
        kind = kind_of(http.method, http.url, self.table_port)
        with self._lock:
            self.counts[kind] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)
