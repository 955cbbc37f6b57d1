"""Runs the detections over one batch of activities: the state they need, read and saved.

The evaluation is pure (`fold.py`); the engine reads what it needs, hands what it raises to the
alert writer (`alert_writer.py`: suppressions, daily limit, alert storage, governance) and saves
the profiles. Per tenant: the users' profiles (ETags) and directory records are read together,
each user is folded, the alerts are written, and the profiles are saved with their ETags; a
conflict re-reads and redoes the tenant. The tenant profile merges commutatively (earliest
first-seen, union of countries and alert ids), so it is saved by re-reading and re-merging until
its ETag holds.

Scope: a detection or policy whose scope names groups needs each actor's groups, so the engine
looks the directory up whenever one is enabled (as it does for the terminated-user decision).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shared.activities import ActivityBatch, ActivityStore
from shared.alerts import AlertStore
from shared.detection import incidents
from shared.detection.alert_writer import AlertWriter, DetectionResult
from shared.detection.base import Directory
from shared.detection.fold import DetectorSet, fold_tenant_wide, fold_user, users_of
from shared.detection.policy_findings import TENANT_WIDE
from shared.detection.profiles import TenantProfile, UserProfile
from shared.detection.state import ProfileStore, StateConflict
from shared.governance.message import ActionRequest
from shared.ipintel import IpIntel
from shared.models import Activity, Alert, utc
from shared.suppressions import Suppression

log = logging.getLogger(__name__)
MAX_CONFLICT_RETRIES = 8


# Keeps activities the detections could not evaluate, with the reason.
Quarantine = Callable[[list[Activity], str], None]


class DirectorySource(Protocol):
    def lookup_many(
        self, tenant_id: str, users: dict[str, str], *, entra: bool = True, groups: bool = True
    ) -> dict[str, Directory]: ...


@dataclass(frozen=True)
class DetectionDeps:
    """What `run_batch` reads, writes and calls: `Services.detection_deps()` builds them as
    detect_queue runs it (`dataclasses.replace` one to run it otherwise)."""

    activities: ActivityStore
    state: ProfileStore
    alerts: AlertStore
    enqueue: Callable[[ActionRequest], None]
    detections: DetectorSet
    intel: IpIntel
    directory: DirectorySource | None = None
    quarantine: Quarantine | None = None
    suppressions: Callable[[str], list[Suppression]] | None = None
    notify: Callable[[Alert], None] | None = None  # queues a new alert's notification


def run_batch(deps: DetectionDeps, batch: ActivityBatch) -> DetectionResult:
    """Load the batch's activities and run the detections over them."""
    return Engine(deps).run_activities(deps.activities.load(batch))


class Engine:
    """The detections over activities already loaded."""

    def __init__(self, deps: DetectionDeps) -> None:
        self.profiles, self.detections, self.intel = deps.state, deps.detections, deps.intel
        self.directory = deps.directory
        self.quarantine = deps.quarantine
        self.writer = AlertWriter(
            deps.alerts, deps.state.daily_limits, deps.enqueue, deps.suppressions, deps.notify
        )
        detections = deps.detections
        self._terminated_on = any(
            d.id == "vigil.terminated_user" and c.enabled for d, c in detections.builtins
        )
        self._groups_on = any(
            c.enabled and c.scopes_groups
            for c in [
                *(c for _, c in detections.builtins),
                *(p.config for p in detections.policies),
            ]
        )

    def run_activities(self, loaded: list[Activity]) -> DetectionResult:
        result = DetectionResult(activities=len(loaded))
        by_tenant: dict[str, list[Activity]] = {}
        for a in sorted(loaded, key=lambda x: (utc(x.time), x.event_id)):
            by_tenant.setdefault(a.tenant_id, []).append(a)
        for tenant, acts in by_tenant.items():
            for attempt in range(MAX_CONFLICT_RETRIES):
                part = DetectionResult()
                try:
                    self._tenant(tenant, acts, part)
                    break
                except StateConflict:
                    if attempt == MAX_CONFLICT_RETRIES - 1:
                        raise
                    log.info("detection profile conflict; re-reading", extra={"tenant": tenant})
            result.created += part.created
            result.updated += part.updated
            result.requests += part.requests
        return result

    def _directories(self, tenant: str, emails: dict[str, str]) -> dict[str, Directory]:
        """The users' directory records, when an enabled detection needs them (else none)."""
        if self.directory is None or not (self._terminated_on or self._groups_on):
            return {}
        return self.directory.lookup_many(
            tenant, emails, entra=self._terminated_on, groups=self._groups_on
        )

    def _tenant(self, tenant: str, acts: list[Activity], result: DetectionResult) -> None:
        """One tenant's activities (event-time order): profiles and directory records read
        together, saved together.

        Reads take one query per 14 users and saves one transaction per 100, instead of a read
        and a write per user; a concurrent change fails the save and the caller redoes it all.
        The accounts a batch deactivates or re-activates are folded too (their profiles hold
        their terminations), even when they did nothing in it themselves.
        """
        first = self.profiles.get_tenant(tenant)
        view = first[0]
        delta = TenantProfile()
        users = users_of(acts, self._terminated_on)
        emails = {
            u: own[-1].actor_email if own else (switched or [])[-1].target_email
            for u, (own, switched) in users.items()
        }
        profiles = self.profiles.get_users(tenant, list(users))
        directories = self._directories(tenant, emails)
        changed: list[tuple[str, UserProfile, str | None]] = []
        for user, (own, switched) in users.items():
            profile, etag = profiles[user]
            learned, folded = self._user(
                tenant,
                own,
                view,
                result,
                profile,
                etag,
                directories.get(user, Directory()),
                switched,
            )
            if folded is not None:
                changed.append((user, folded, etag))
            delta = delta.merge(learned)
            view = view.merge(learned)
        self.profiles.save_users(tenant, changed)
        if any(not p.match.same_user and p.config.enabled for p in self.detections.policies):
            for attempt in range(MAX_CONFLICT_RETRIES):
                try:
                    self._tenant_wide(tenant, acts, view, directories, result)
                    break
                except StateConflict:
                    if attempt == MAX_CONFLICT_RETRIES - 1:
                        raise
        self._save_tenant(tenant, delta, first)

    def _tenant_wide(
        self,
        tenant: str,
        acts: list[Activity],
        view: TenantProfile,
        directories: dict[str, Directory],
        result: DetectionResult,
    ) -> None:
        profile, etag = self.profiles.get(tenant, TENANT_WIDE)
        folded, raised = fold_tenant_wide(
            profile, view, acts, self.detections, self.intel, directories
        )
        if folded == profile and etag is not None:
            return
        for r in raised:
            self.writer.write(tenant, r, result)
        self.profiles.save(tenant, TENANT_WIDE, folded, etag)

    def _save_tenant(
        self,
        tenant: str,
        delta: TenantProfile,
        first: tuple[TenantProfile, str | None] | None = None,
    ) -> None:
        """Merge what was learned into the tenant profile; `first` is the copy already read."""
        for _ in range(MAX_CONFLICT_RETRIES * 2):
            current, etag = first or self.profiles.get_tenant(tenant)
            first = None
            merged = current.merge(delta)
            if merged == current and etag is not None:
                return
            try:
                self.profiles.save_tenant(tenant, merged, etag)
                return
            except StateConflict:
                continue
        raise StateConflict(f"tenant profile {tenant} kept changing")

    def _user(
        self,
        tenant: str,
        acts: list[Activity],
        view: TenantProfile,
        result: DetectionResult,
        profile: UserProfile,
        etag: str | None,
        directory: Directory,
        switches: list[Activity] | None = None,
    ) -> tuple[TenantProfile, UserProfile | None]:
        """Fold one user's activities; returns what the tenant learned and the profile to save
        (None when nothing changed: a redelivery). Alerts are written before the save.

        Activities that make the evaluation raise are quarantined with the reason (when a
        quarantine is given), so one user's bad data never holds back the others'."""
        try:
            fold = fold_user(profile, view, acts, self.detections, self.intel, directory, switches)
        except Exception as exc:
            if self.quarantine is None:
                raise
            log.warning("detection failed for one user; activities quarantined: %r", exc)
            self.quarantine(acts, f"detection raised {type(exc).__name__}: {exc}")
            return TenantProfile(), None
        if fold.profile == profile and etag is not None:
            return fold.learned, None
        folded = fold.profile
        for r in fold.raised:
            reopened = self.writer.write(tenant, r, result)
            if reopened is not None:
                folded = incidents.reopen(folded, r.alert_id, *reopened)
        return fold.learned, folded
