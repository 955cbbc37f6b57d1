"""What a raised finding does in storage: the analysts' suppressions, the daily alert limit,
the alert created or grown (`AlertStore.merge` under its ETag), and for a new alert the
governance its detector asks for (`AlertWriter._created`, the one place an alert's creation is
followed up).

The daily alert limit reserves its slots in storage with ETags (`daily_limit.py`), so it is exact
across workers. An alert an analyst resolved is not grown: the incident goes on as a new alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared import telemetry
from shared.alerts import AlertStore, alert_row_key
from shared.detection.base import DetectorConfig, Finding
from shared.detection.daily_limit import DailyLimits
from shared.detection.fold import Raised
from shared.governance.message import ActionRequest
from shared.logsafe import quoted
from shared.models import Alert, Evidence, short_hash, utc
from shared.suppressions import Suppression, apply_suppressions

log = logging.getLogger(__name__)


@dataclass
class DetectionResult:
    activities: int = 0
    created: list[Alert] = field(default_factory=list)
    updated: list[Alert] = field(default_factory=list)
    requests: list[ActionRequest] = field(default_factory=list)


class AlertWriter:
    """Writes what the fold raised; the suppressions are read once per tenant (per engine)."""

    def __init__(
        self,
        alerts: AlertStore,
        daily_limits: DailyLimits,
        enqueue: Callable[[ActionRequest], None],
        suppressions: Callable[[str], list[Suppression]] | None = None,
        notify: Callable[[Alert], None] | None = None,  # queues the alert's notification
    ) -> None:
        self.alerts, self.daily_limits, self.enqueue = alerts, daily_limits, enqueue
        self.notify = notify
        self._suppressions = suppressions
        self._tenant_suppressions: dict[str, list[Suppression]] = {}

    def _suppressed(self, tenant: str, r: Raised) -> Finding | None:
        """The finding to raise after the analysts' suppressions (None: one covers it); they are
        read only when a tenant's batch raises something."""
        if self._suppressions is None:
            return r.finding
        if tenant not in self._tenant_suppressions:
            self._tenant_suppressions[tenant] = self._suppressions(tenant)
        kept = apply_suppressions(
            [(r.activity.actor_id, r.finding)], self._tenant_suppressions[tenant]
        )
        return kept[0][1] if kept else None

    def write(self, tenant: str, r: Raised, result: DetectionResult) -> tuple[str, datetime] | None:
        """Create or grow the alert; governance only for a new one. When the open alert it
        would grow was closed by an analyst, the incident goes on as a new alert: returns its
        (id, creation time)."""
        finding = self._suppressed(tenant, r)
        if finding is None:
            log.info("finding of %s suppressed by an analyst", r.finding.detector_id)
            return None
        r = replace(r, finding=finding)
        f, cfg = r.finding, r.config
        created = utc(r.created or f.first)
        alert = alert_of(r, tenant, r.alert_id, created)
        if not f.extends and cfg.daily_limit:  # per tenant, per event day
            day = utc(f.first).date()
            limit = cfg.daily_limit
            capped = not self.daily_limits.reserve(tenant, cfg.id, day, r.alert_id, limit)
            alert = replace(alert, capped=capped)
        outcome = self.alerts.merge(alert)
        reopened: tuple[str, datetime] | None = None
        if outcome == "closed":
            new_id = short_hash(r.alert_id, "after-closed", f.activity_ids[0])
            created = utc(f.first)
            alert = alert_of(r, tenant, new_id, created)
            self.alerts.merge(alert)
            reopened = (new_id, created)
        elif f.extends:
            if outcome == "merged":
                result.updated.append(alert)
            return None
        self._created(tenant, alert, cfg, result)
        return reopened

    def _created(
        self, tenant: str, alert: Alert, cfg: DetectorConfig, result: DetectionResult
    ) -> None:
        """A new alert is stored: the one place that follows an alert's creation (its log line
        and counter, the result, and the governance its detector asks for, which the daily
        limit never holds back)."""
        key = alert_row_key(alert)
        if alert.capped:
            log.info("alert over the daily limit of %s: stored, not raised", cfg.id)
        else:
            log.warning(
                "alert raised: %s",
                quoted(alert.title),
                extra={"alert_id": alert.id, "detector": alert.detector_id, "tenant": tenant},
            )
            telemetry.alerts_raised(1, alert.detector_id)
        result.created.append(alert)
        if self.notify is not None:
            self.notify(alert)
        for step in cfg.governance:
            request = ActionRequest(
                tenant, key, step.action, alert.policy_id, step.approval_required
            )
            self.enqueue(request)
            result.requests.append(request)


def alert_of(r: Raised, tenant: str, alert_id: str, created: datetime) -> Alert:
    """The alert a raised finding makes (or grows)."""
    f, cfg, a = r.finding, r.config, r.activity
    return Alert(
        id=alert_id,
        tenant_id=tenant,
        source=a.source,
        detector_id=f.detector_id,
        title=f.title,
        description=f.description,
        severity=cfg.severity or f.severity,
        category=f.category,
        mitre_techniques=f.mitre_techniques,
        user_id=a.actor_id,
        user_email=a.actor_email,
        first_activity_time=f.first,
        last_activity_time=f.last,
        created_time=created,
        evidence=Evidence(f.facts, f.activity_ids, f.suppressions_evaluated),
        dedup_key=f"{f.detector_id}|{tenant}|{a.actor_id}|{f.window}",
        actions=tuple(s.action for s in cfg.governance),
        event_count=f.event_count,
        policy_id=f.policy_id or f.detector_id,
        recommended_actions=f.recommended_actions,
        capped=False,
    )
