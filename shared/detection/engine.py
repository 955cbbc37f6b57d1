"""Runs every enabled detection over one batch of activities and writes what they raise.

Per user: read the profile (ETag), fold the user's activities in event-time order through the
detections (pure), then create or grow alerts (deterministic ids; `AlertStore.merge` under the
alert's ETag), queue governance for new alerts only, and save the profile with its ETag. A
conflict re-reads and redoes that user. The tenant profile merges commutatively (earliest
first-seen, union of countries and alert ids), so it is saved by re-reading and re-merging until
its ETag holds. The accounts a batch deactivates or re-activates are folded as users too: their
profiles hold their terminations (`terminated_user.py`), whoever did the switching.

One alert per incident: the user's profile remembers its open incidents per detector
(`incidents.py`), so a finding within its detector's merge window grows that alert; a new alert's
id hashes detector, tenant, user, window and start, and the profile remembers the ids it raised,
so a redelivered activity never makes a second alert. An alert an analyst resolved is not grown:
the incident goes on as a new alert.

Scope: a detection or policy whose scope names groups needs each actor's groups, so the engine
looks the directory up whenever one is enabled (as it does for the terminated-user decision).
Activity policies skip activities from before their creation time (event time). The daily alert
limit reserves its slots in storage with ETags (`daily_limit.py`), so it is exact across workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared import telemetry
from shared.activities import ActivityBatch, ActivityStore
from shared.alerts import AlertStore, alert_row_key
from shared.detection import (
    bursts,
    impossible_travel,
    incidents,
    terminated_user,
    unusual_admin,
)
from shared.detection.base import (
    Detection,
    DetectorConfig,
    Directory,
    Finding,
    Observation,
)
from shared.detection.profiles import (
    BurstState,
    Failure,
    TenantProfile,
    UserProfile,
    remember,
)
from shared.detection.state import ProfileStore, StateConflict
from shared.governance.executor import ActionRequest
from shared.ipintel import IpIntel
from shared.logsafe import quoted
from shared.models import Activity, Alert, Evidence, short_hash, utc
from shared.policies import ActivityPolicy
from shared.suppressions import Suppression, apply_suppressions

log = logging.getLogger(__name__)
MAX_CONFLICT_RETRIES = 8
_HOURS = tuple(f"{h:02d}" for h in range(24))
TENANT_WIDE = "~tenant"  # the subject of repeated-activity policies counted across users


# Keeps activities the detections could not evaluate, with the reason.
Quarantine = Callable[[list[Activity], str], None]


class DirectorySource(Protocol):
    def lookup_many(
        self, tenant_id: str, users: dict[str, str], *, entra: bool = True, groups: bool = True
    ) -> dict[str, Directory]: ...


@dataclass(frozen=True)
class Detections:
    """What runs: the built-ins with their configuration, and the activity policies."""

    builtins: tuple[tuple[Detection, DetectorConfig], ...]
    policies: tuple[ActivityPolicy, ...] = ()
    learning: timedelta = timedelta(days=7)


@dataclass
class DetectionResult:
    activities: int = 0
    created: list[Alert] = field(default_factory=list)
    updated: list[Alert] = field(default_factory=list)
    requests: list[ActionRequest] = field(default_factory=list)


@dataclass(frozen=True)
class Raised:
    finding: Finding
    config: DetectorConfig
    activity: Activity
    alert_id: str
    created: datetime | None = None  # the alert's creation time (row key): default the finding's


def learn(profile: UserProfile, obs: Observation) -> tuple[UserProfile, TenantProfile]:
    """What the activity teaches the user's and the tenant's baselines (after it was judged)."""
    a, ip = obs.activity, obs.ip
    t = utc(a.time)
    changes: dict[str, Any] = {}
    if profile.first_seen is None or t < profile.first_seen:
        changes["first_seen"] = t
    tenant = TenantProfile(first_seen=t)
    if obs.geo_eligible:
        if ip.country and not ip.no_physical_location:
            countries = remember(profile.countries, ip.country, t)
            if countries is not profile.countries:
                changes["countries"] = countries
            tenant = TenantProfile(first_seen=t, countries={ip.country: t})
        if ip.anonymous and not ip.safe:
            tenant = replace(tenant, anonymous_ip_users={ip.ip: (a.actor_id,)})
        if ip.isp:
            isps = remember(profile.isps, ip.isp, t)
            if isps is not profile.isps:
                changes["isps"] = isps
    if not a.impersonated:
        hour = _HOURS[t.hour]
        last = profile.hours.get(hour)
        if last is None or last.date() < t.date():  # once per hour of day and day
            changes["hours"] = {**profile.hours, hour: t}
    if a.administrative:
        changes.update(unusual_admin.learned(profile, obs))
        tenant = replace(tenant, admin_actions={a.event_name: (a.actor_id,)})
    if a.impersonated:
        impersonated = remember(profile.impersonated, a.event_name, t)
        if impersonated is not profile.impersonated:
            changes["impersonated"] = impersonated
    p = profile.evolve(**changes) if changes else profile
    if obs.geo_eligible:
        hop = impossible_travel.hop_of(obs)
        if hop is not None:
            p = p.with_hop(hop)
    return p, tenant


def policy_findings(
    policy: ActivityPolicy, profile: UserProfile, obs: Observation
) -> tuple[UserProfile, list[Finding]]:
    """An activity policy over one matching activity: every match, or N within M minutes."""
    a, ip = obs.activity, obs.ip
    match = policy.match
    first = last = utc(a.time)
    ids: tuple[str, ...] = (a.event_id,)
    window, extends, count = a.event_id, False, 1
    if match.mode == "repeated":
        state = profile.repeated.get(policy.id, BurstState())
        state, decision = bursts.fold(
            state,
            Failure(first, a.event_id, a.ip, ip.country),
            key=f"{policy.id}|{a.tenant_id}|{a.actor_id if match.same_user else TENANT_WIDE}",
            more_than=match.count - 1,
            window=match.window,
        )
        profile = profile.evolve(repeated={**profile.repeated, policy.id: state})
        if decision is None:
            return profile, []
        first, last, extends = decision.first, decision.last, not decision.new
        window, count = decision.alert_id, len(decision.failures)
        ids = tuple(f.event_id for f in decision.failures[-50:])
    values = {
        "policy": policy.id,
        "user": a.actor_email or a.actor_id,
        "user_id": a.actor_id,
        "ip": a.ip,
        "country": ip.country,
        "event": a.event_name,
        "count": count,
        "window_minutes": int(match.window.total_seconds() // 60),
        "target": a.target_email or a.target_id,
    }
    title = policy.title.format_map(values)
    return profile, [
        Finding(
            detector_id=policy.id,
            window=window,
            title=title,
            description=policy.description or title,
            severity=policy.severity,
            category="ActivityPolicy",
            mitre_techniques=(),
            facts={
                "policy": policy.id,
                "policy_file": policy.source,
                "mode": match.mode,
                "count": count,
                "ip": a.ip,
                "ip_category": ip.category,
                "country": ip.country,
                "event": a.event_name,
            },
            first=first,
            last=last,
            activity_ids=ids,
            event_count=count,
            extends=extends,
            policy_id=policy.id,
        )
    ]


def observe(
    profile: UserProfile,
    view: TenantProfile,
    a: Activity,
    intel: IpIntel,
    learning: timedelta,
    directory: Directory,
) -> Observation:
    """The activity with its IP intelligence and learning state (by event time)."""
    t = utc(a.time)
    first_user = t if profile.first_seen is None else min(profile.first_seen, t)
    first_tenant = t if view.first_seen is None else min(view.first_seen, t)
    return Observation(
        a,
        intel.lookup(a.ip, a.country),
        user_learning=t < first_user + learning,
        tenant_learning=t < first_tenant + learning,
        directory=directory,
    )


@dataclass(frozen=True)
class UserFold:
    profile: UserProfile  # the user's profile after the activities
    learned: TenantProfile  # what they taught the tenant profile (to merge)
    view: TenantProfile  # the tenant profile as seen after them
    raised: tuple[Raised, ...]  # alerts to write: new, or open ones extended


def before_creation(policy: ActivityPolicy, a: Activity) -> bool:
    """MDCA: a policy alerts only on activities after its creation (by their event time)."""
    return policy.created is not None and utc(a.time) < policy.created


def fold_user(
    profile: UserProfile,
    view: TenantProfile,
    acts: list[Activity],
    detections: Detections,
    intel: IpIntel,
    directory: Directory | None = None,
    switches: list[Activity] | None = None,
) -> UserFold:
    """The pure evaluation: one user's activities (event-time order) through every detection.

    `switches`: the batch's deactivations and re-activations of this user (whoever did them),
    recorded at their event times before the user's own activities are judged."""
    directory = directory or Directory()
    groups = directory.groups
    # Per activity, only the enabled detections that apply; scope is checked only where set.
    enabled = [(d, c) for d, c in detections.builtins if c.enabled]
    everywhere = [(d.decide, c, c.scoped) for d, c in enabled]
    not_geo = [e for e, (d, _) in zip(everywhere, enabled, strict=True) if not d.geo]
    policies = [
        (p, p.config.scoped) for p in detections.policies if p.config.enabled and p.match.same_user
    ]
    learned = TenantProfile()
    raised: dict[str, Raised] = {}

    def keep(f: Finding, cfg: DetectorConfig, a: Activity) -> None:
        nonlocal profile, learned, view
        profile, joined = incidents.join(profile, f, a.tenant_id, a.actor_id)
        if joined.skip:
            return  # already raised: a redelivery, or a repeat within the window
        known = raised.get(joined.alert_id)
        if known is not None:  # twice in this batch: one finding (new if the first was new)
            f = replace(incidents.combine(known.finding, f), extends=known.finding.extends)
        else:
            f = replace(f, extends=joined.extends)
        raised[joined.alert_id] = Raised(f, cfg, a, joined.alert_id, joined.created)
        profile = profile.with_alert(joined.alert_id, utc(f.last))
        if f.isp and f.detector_id == impossible_travel.DETECTOR_ID:
            mark = TenantProfile(alerted_isps={f.isp: utc(f.last)})
            learned, view = learned.merge(mark), view.merge(mark)

    terminated = [c for d, c in enabled if d.id == terminated_user.DETECTOR_ID]
    if switches and terminated:
        cfg = terminated[0]
        subject = replace(
            switches[0], actor_id=switches[0].target_id, actor_email=switches[0].target_email
        )
        if not cfg.scoped or cfg.in_scope(subject, groups):
            recorded = [s for x in switches if (s := terminated_user.lifecycle_of(x))]
            profile, found = terminated_user.apply(
                profile,
                [life for _, life in recorded],
                subject.actor_email or subject.actor_id,
                cfg,
                directory,
            )
            for f in found:
                keep(f, cfg, subject)
    for a in acts:
        obs = observe(profile, view, a, intel, detections.learning, directory)
        findings: list[tuple[Finding, DetectorConfig]] = []
        for decide, cfg, scoped in everywhere if obs.geo_eligible else not_geo:
            if not scoped or cfg.in_scope(a, groups):
                profile, found = decide(profile, view, obs, cfg)
                if found:
                    findings.extend((f, cfg) for f in found)
        for policy, scoped in policies:
            cfg = policy.config
            if policy.types is not None and a.type.lower() not in policy.types:
                continue  # the cheap test first: most policies are about a few types
            if before_creation(policy, a) or (scoped and not cfg.in_scope(a, groups)):
                continue
            if policy.matches(a, obs.ip):
                profile, found = policy_findings(policy, profile, obs)
                findings.extend((f, cfg) for f in found)
        profile, taught = learn(profile, obs)
        merged = view.merge(taught)
        if merged is not view:  # else what will be saved already covers it
            learned, view = learned.merge(taught), merged
        for f, cfg in findings:
            keep(f, cfg, a)
    return UserFold(profile, learned, view, tuple(raised.values()))


def switches_by_target(acts: list[Activity]) -> dict[str, list[Activity]]:
    """The batch's deactivations and re-activations, by the account they switched."""
    out: dict[str, list[Activity]] = {}
    for a in acts:
        found = terminated_user.lifecycle_of(a)
        if found is not None:
            out.setdefault(found[0], []).append(a)
    return out


def fold_tenant_wide(
    profile: UserProfile,
    view: TenantProfile,
    acts: list[Activity],
    detections: Detections,
    intel: IpIntel,
    directories: dict[str, Directory] | None = None,
) -> tuple[UserProfile, tuple[Raised, ...]]:
    """Repeated-activity policies counted across all users of a tenant (`same_user: false`);
    `directories` gives each actor's groups for the policies' scopes."""
    policies = [p for p in detections.policies if p.config.enabled and not p.match.same_user]
    directories = directories or {}
    nobody = Directory()
    raised: dict[str, Raised] = {}
    for a in acts:
        directory = directories.get(a.actor_id, nobody)
        obs = observe(
            UserProfile(first_seen=a.time), view, a, intel, detections.learning, directory
        )
        for policy in policies:
            cfg = policy.config
            if before_creation(policy, a) or (cfg.scoped and not cfg.in_scope(a, directory.groups)):
                continue
            if not policy.matches(a, obs.ip):
                continue
            profile, found = policy_findings(policy, profile, obs)
            for f in found:
                alert_id = short_hash(f.detector_id, a.tenant_id, TENANT_WIDE, f.window)
                if alert_id in profile.alerts and not f.extends:
                    continue
                known = raised.get(alert_id)
                if known is not None and not known.finding.extends and f.extends:
                    f = replace(f, extends=False)
                raised[alert_id] = Raised(f, policy.config, a, alert_id)
                profile = profile.with_alert(alert_id, utc(f.last))
    return profile, tuple(raised.values())


def run_batch(
    batch: ActivityBatch,
    *,
    activities: ActivityStore,
    state: ProfileStore,
    alerts: AlertStore,
    enqueue: Callable[[ActionRequest], None],
    detections: Detections,
    intel: IpIntel,
    directory: DirectorySource | None = None,
    quarantine: Quarantine | None = None,
    suppressions: Callable[[str], list[Suppression]] | None = None,
) -> DetectionResult:
    """Load the batch's activities and run the detections over them."""
    engine = Engine(
        profiles=state,
        alerts=alerts,
        enqueue=enqueue,
        detections=detections,
        intel=intel,
        directory=directory,
        quarantine=quarantine,
        suppressions=suppressions,
    )
    return engine.run_activities(activities.load(batch))


class Engine:
    """The detections over activities already loaded (also what the benchmark drives)."""

    def __init__(
        self,
        *,
        profiles: ProfileStore,
        alerts: AlertStore,
        enqueue: Callable[[ActionRequest], None],
        detections: Detections,
        intel: IpIntel,
        directory: DirectorySource | None = None,
        quarantine: Quarantine | None = None,
        suppressions: Callable[[str], list[Suppression]] | None = None,
    ) -> None:
        self.profiles, self.alerts = profiles, alerts
        self.enqueue, self.detections, self.intel = enqueue, detections, intel
        self.directory = directory
        self.quarantine = quarantine
        self._suppressions = suppressions
        self._tenant_suppressions: dict[str, list[Suppression]] = {}  # read once per batch
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
        by_tenant: dict[str, dict[str, list[Activity]]] = {}
        for a in sorted(loaded, key=lambda x: (utc(x.time), x.event_id)):
            by_tenant.setdefault(a.tenant_id, {}).setdefault(a.actor_id, []).append(a)
        for tenant, users in by_tenant.items():
            for attempt in range(MAX_CONFLICT_RETRIES):
                part = DetectionResult()
                try:
                    self._tenant(tenant, users, part)
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

    def _tenant(
        self, tenant: str, users: dict[str, list[Activity]], result: DetectionResult
    ) -> None:
        """One tenant's users: profiles and directory records read together, saved together.

        Reads take one query per 14 users and saves one transaction per 100, instead of a read
        and a write per user; a concurrent change fails the save and the caller redoes it all.
        The accounts a batch deactivates or re-activates are folded too (their profiles hold
        their terminations), even when they did nothing in it themselves.
        """
        first = self.profiles.get_tenant(tenant)
        view = first[0]
        delta = TenantProfile()
        everyone_acts = [a for acts in users.values() for a in acts]
        switches = switches_by_target(everyone_acts) if self._terminated_on else {}
        users = {**{u: [] for u in switches}, **users}
        emails = {
            u: acts[-1].actor_email if acts else switches[u][-1].target_email
            for u, acts in users.items()
        }
        profiles = self.profiles.get_users(tenant, list(users))
        directories = self._directories(tenant, emails)
        changed: list[tuple[str, UserProfile, str | None]] = []
        for user, acts in users.items():
            profile, etag = profiles[user]
            learned, folded = self._user(
                tenant,
                acts,
                view,
                result,
                profile,
                etag,
                directories.get(user, Directory()),
                switches.get(user),
            )
            if folded is not None:
                changed.append((user, folded, etag))
            delta = delta.merge(learned)
            view = view.merge(learned)
        self.profiles.save_users(tenant, changed)
        if any(not p.match.same_user and p.config.enabled for p in self.detections.policies):
            everyone = sorted(everyone_acts, key=lambda x: (utc(x.time), x.event_id))
            for attempt in range(MAX_CONFLICT_RETRIES):
                try:
                    self._tenant_wide(tenant, everyone, view, directories, result)
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
            self._write(tenant, r, result)
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
            reopened = self._write(tenant, r, result)
            if reopened is not None:
                folded = incidents.reopen(folded, r.alert_id, *reopened)
        return fold.learned, folded

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

    def _write(
        self, tenant: str, r: Raised, result: DetectionResult
    ) -> tuple[str, datetime] | None:
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
        alert = self._alert(tenant, r, r.alert_id, created, capped=False)
        if not f.extends and cfg.daily_limit:  # per tenant, per event day
            day = utc(f.first).date()
            slots = self.profiles.daily_limits
            capped = not slots.reserve(tenant, cfg.id, day, r.alert_id, cfg.daily_limit)
            alert = replace(alert, capped=capped)
        outcome = self.alerts.merge(alert)
        reopened: tuple[str, datetime] | None = None
        if outcome == "closed":
            new_id = short_hash(r.alert_id, "after-closed", f.activity_ids[0])
            created = utc(f.first)
            alert = self._alert(tenant, r, new_id, created, capped=False)
            self.alerts.merge(alert)
            reopened = (new_id, created)
        elif f.extends:
            if outcome == "merged":
                result.updated.append(alert)
            return None
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
        for step in cfg.governance:  # never held back by the daily limit
            request = ActionRequest(
                tenant, key, step.action, alert.policy_id, step.approval_required
            )
            self.enqueue(request)
            result.requests.append(request)
        return reopened

    def _alert(
        self, tenant: str, r: Raised, alert_id: str, created: datetime, *, capped: bool
    ) -> Alert:
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
            capped=capped,
        )
