"""The Tor exit list, from the bulk list or TorDNSEL `exit-addresses`; the last good copy is kept.

Entries are `(ip, first_seen, last_seen)`; an address missing from refreshes for 72 hours drops out.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.models import utc
from shared.storage import join_text, split_text

log = logging.getLogger(__name__)
EXPIRY = timedelta(hours=72)
DEFAULT_URL = "https://check.torproject.org/torbulkexitlist"
MAX_ENTRIES = 6000  # ~70 characters each: well within 15 properties of 30,000


@dataclass(frozen=True)
class TorEntry:
    ip: str
    first_seen: datetime
    last_seen: datetime


def parse_exit_list(text: str) -> set[str]:
    """IPs from the bulk list (one per line) or TorDNSEL records (`ExitAddress <ip> <time>`)."""
    found: set[str] = set()
    for line in text.splitlines():
        parts = line.strip().split()
        if not parts or parts[0].startswith("#"):
            continue
        candidate = parts[1] if parts[0] == "ExitAddress" and len(parts) > 1 else parts[0]
        try:
            found.add(str(ipaddress.ip_address(candidate)))
        except ValueError:
            continue  # ExitNode, Published, LastStatus lines and noise
    return found


def merge(known: dict[str, TorEntry], fetched: set[str], now: datetime) -> dict[str, TorEntry]:
    """Refresh seen addresses, add new ones, drop those not seen for `EXPIRY`."""
    out = {ip: TorEntry(ip, known[ip].first_seen if ip in known else now, now) for ip in fetched}
    for ip, e in known.items():
        if ip not in out and now - e.last_seen < EXPIRY:
            out[ip] = e
    return out


class TorExitStore:
    """One entity holding the list (a few thousand addresses fit in its properties)."""

    PK, RK = "tor", "exit-list"

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def load(self) -> dict[str, TorEntry]:
        try:
            e = self._table.get_entity(self.PK, self.RK)
        except ResourceNotFoundError:
            return {}
        raw: dict[str, list[str]] = json.loads(join_text("Entries", e) or "{}")
        return {
            ip: TorEntry(ip, datetime.fromisoformat(v[0]), datetime.fromisoformat(v[1]))
            for ip, v in raw.items()
        }

    def save(self, entries: dict[str, TorEntry], fetched_at: datetime) -> None:
        if len(entries) > MAX_ENTRIES:  # keep the entity within its size limit: newest first
            newest = sorted(entries.values(), key=lambda e: e.last_seen)[-MAX_ENTRIES:]
            entries = {e.ip: e for e in newest}
        body = json.dumps(
            {ip: [e.first_seen.isoformat(), e.last_seen.isoformat()] for ip, e in entries.items()},
            separators=(",", ":"),
        )
        entity: dict[str, Any] = {
            "PartitionKey": self.PK,
            "RowKey": self.RK,
            "FetchedAt": utc(fetched_at),
            "Count": len(entries),
            **split_text("Entries", body, max_parts=15),
        }
        self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def addresses(self) -> frozenset[str]:
        return frozenset(self.load())


def refresh(store: TorExitStore, fetch: Callable[[], str], now: datetime) -> tuple[bool, int]:
    """Fetch and merge the list; on any failure keep the last good copy. Returns (ok, count)."""
    known = store.load()
    try:
        fetched = parse_exit_list(fetch())
    except Exception as exc:  # any fetch failure keeps the last good copy
        log.warning(
            "tor exit list not refreshed (%s); keeping %d known", type(exc).__name__, len(known)
        )
        return False, len(known)
    if not fetched:
        log.warning("tor exit list was empty or unreadable; keeping %d known", len(known))
        return False, len(known)
    merged = merge(known, fetched, utc(now))
    store.save(merged, now)
    return True, len(merged)


def http_fetch(url: str, timeout: float = 20.0) -> Callable[[], str]:
    """A fetcher for `refresh`: GET the list, failing on any non-2xx answer."""
    import requests

    def fetch() -> str:
        resp = requests.get(url, timeout=timeout)
        resp.raise_for_status()
        return resp.text

    return fetch
