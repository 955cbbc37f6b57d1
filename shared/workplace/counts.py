"""Activities per community and Workplace event name, unknown names included, counted once.

Each unit of work (one inbox entry, one directory snapshot) records the activities it added as a
tally row, created once: a retry after a crash finds the row and keeps it, and an event already
stored (a redelivery) is not in any new tally. The status page sums the rows.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError

from shared.activities import partition_key, row_key
from shared.models import Activity
from shared.storage import MAX_BATCH, chunks
from shared.table_tx import submit


def stored_keys(table: TableClient, activities: Iterable[Activity]) -> set[tuple[str, str]]:
    """Which of these activities are already stored (one range query per partition)."""
    by_pk: dict[str, set[str]] = {}
    for a in activities:
        by_pk.setdefault(partition_key(a), set()).add(row_key(a))
    found: set[tuple[str, str]] = set()
    for pk, rks in by_pk.items():
        for lo, hi in _clusters(sorted(rks)):
            rows = table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi",
                parameters={"pk": pk, "lo": lo, "hi": hi},
                select=["RowKey"],
            )
            found.update((pk, e["RowKey"]) for e in rows if e["RowKey"] in rks)
    return found


CLUSTER_GAP_TICKS = 10 * 60 * 10_000_000  # ten minutes


def _clusters(keys: list[str]) -> list[tuple[str, str]]:
    """Key ranges without long gaps, so a late redelivery does not make us read a whole day."""
    ranges: list[tuple[str, str]] = []
    for key in keys:
        if ranges and _ticks(key) - _ticks(ranges[-1][1]) <= CLUSTER_GAP_TICKS:
            ranges[-1] = (ranges[-1][0], key)
        else:
            ranges.append((key, key))
    return ranges


def _ticks(row_key: str) -> int:
    head = row_key.split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def new_activities(
    table: TableClient,
    units: list[tuple[str, list[Activity]]],
    counted: Collection[str] = (),
) -> list[tuple[str, list[Activity]]]:
    """Per unit of work not yet `counted`, the activities neither stored nor counted before it.

    The activities of units already counted (a retry after a crash) are taken as seen, so an
    event they hold is not counted again for another unit in the same page.
    """
    seen = stored_keys(table, [a for _, acts in units for a in acts])
    seen.update((partition_key(a), row_key(a)) for u, acts in units if u in counted for a in acts)
    out: list[tuple[str, list[Activity]]] = []
    for unit, acts in units:
        if unit in counted:
            continue
        fresh: list[Activity] = []
        for a in acts:
            key = (partition_key(a), row_key(a))
            if key not in seen:
                seen.add(key)
                fresh.append(a)
        out.append((unit, fresh))
    return out


TOTAL = "total"


class EventCountStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def counted(self, units: list[tuple[str, list[Activity]]]) -> set[str]:
        """The units that already have their tally rows (one range query per community)."""
        keys = {f"t_{unit}": unit for unit, _ in units}
        tenants = {a.tenant_id for _, acts in units for a in acts}
        if not keys:
            return set()
        found: set[str] = set()
        for tenant in tenants:
            rows = self._table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi",
                parameters={"pk": tenant, "lo": min(keys), "hi": max(keys)},
                select=["RowKey"],
            )
            found.update(keys[e["RowKey"]] for e in rows if e["RowKey"] in keys)
        return found

    def record_once(self, units: list[tuple[str, list[Activity]]]) -> None:
        """One tally row per (community, unit); an existing row is kept as it is."""
        rows: dict[str, list[dict[str, object]]] = {}
        for unit, acts in units:
            per_tenant: dict[str, Counter[str]] = {}
            for a in acts:
                per_tenant.setdefault(a.tenant_id, Counter())[a.event_name] += 1
            for tenant, counts in per_tenant.items():
                rows.setdefault(tenant, []).append(
                    {"PartitionKey": tenant, "RowKey": f"t_{unit}", "Counts": json.dumps(counts)}
                )
        for group in rows.values():
            for batch in chunks(group, MAX_BATCH):
                try:
                    submit(self._table, [("create", e) for e in batch])
                except TableTransactionError:  # some exist (a retried unit): one by one
                    for e in batch:
                        with contextlib.suppress(ResourceExistsError):
                            self._table.create_entity(e)

    def compact(self, community_id: str, older_than: datetime) -> int:
        """Fold up to 99 tally rows written before `older_than` into the community's total row.

        The total's update (guarded by its ETag) and the deletes are one transaction, so a crash
        or a race never counts a tally twice. Only old rows are folded: a unit retried soon after
        a crash still finds its tally row and is not counted again.
        """
        rows = list(
            self._table.query_entities(
                "PartitionKey eq @pk and RowKey ge 't_' and RowKey lt 't`' and Timestamp lt @t",
                parameters={"pk": community_id, "t": older_than},
                select=["RowKey", "Counts"],
                results_per_page=MAX_BATCH - 1,
            ).by_page()
        )
        page = list(rows[0]) if rows else []
        if not page:
            return 0
        total: Counter[str] = Counter()
        ops: list[Any] = []
        try:
            current = self._table.get_entity(community_id, TOTAL)
            total.update(json.loads(current.get("Counts") or "{}"))
            guard = {
                "etag": current.metadata["etag"],
                "match_condition": MatchConditions.IfNotModified,
            }
            verb = "update"
        except ResourceNotFoundError:
            guard, verb = {}, "create"
        for e in page:
            total.update(json.loads(e.get("Counts") or "{}"))
            ops.append(("delete", {"PartitionKey": community_id, "RowKey": e["RowKey"]}))
        entity = {"PartitionKey": community_id, "RowKey": TOTAL, "Counts": json.dumps(total)}
        ops.insert(0, (verb, entity, guard) if guard else (verb, entity))
        try:
            submit(self._table, ops)
        except TableTransactionError:
            return 0  # another run folded first: nothing lost, try again next time
        return len(page)

    def totals(self, community_id: str) -> Counter[str]:
        total: Counter[str] = Counter()
        for e in self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": community_id}, select=["Counts"]
        ):
            total.update(json.loads(e.get("Counts") or "{}"))
        return total
