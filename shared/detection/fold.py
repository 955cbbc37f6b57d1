"""The pure evaluation: activities, profiles and configuration in; profiles and findings out.

No storage, no clock, no I/O: `engine.py` reads the state, calls these and writes what they
raise. Each user's activities are folded in event-time order through the enabled detections and
the activity policies (`fold_user`); the accounts a batch deactivates or re-activates are folded
as users too, their terminations recorded at their event times (`terminated_user.py`);
repeated-activity policies counted across users fold on a tenant-wide profile
(`fold_tenant_wide`). What an activity teaches the baselines is learned after it was judged.

One alert per incident: the user's profile remembers its open incidents per detector
(`incidents.py`), so a finding within its detector's merge window grows that alert; a new alert's
id hashes detector, tenant, user, window and start, and the profile remembers the ids it raised.
The dedup rule (`raise_once`) is the same for users and the tenant-wide profile: a redelivered
activity never makes a second alert, and one incident found twice in a batch is one finding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.detection import (
    anonymous_ip,
    impossible_travel,
    incidents,
    terminated_user,
    unusual_admin,
)
from shared.detection.base import Detection, DetectorConfig, Directory, Finding, Observation
from shared.detection.policy_findings import TENANT_WIDE, before_creation, policy_findings
from shared.detection.profiles import TenantProfile, UserProfile, remember
from shared.ipintel import IpIntel
from shared.models import Activity, utc
from shared.policies import ActivityPolicy

_HOURS = tuple(f"{h:02d}" for h in range(24))


@dataclass(frozen=True)
class DetectorSet:
    """The configuration of what runs: the built-ins with their settings, the activity policies,
    and the learning period."""

    builtins: tuple[tuple[Detection, DetectorConfig], ...]
    policies: tuple[ActivityPolicy, ...] = ()
    learning: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Raised:
    finding: Finding
    config: DetectorConfig
    activity: Activity
    alert_id: str
    created: datetime | None = None  # the alert's creation time (row key): default the finding's


@dataclass(frozen=True)
class UserFold:
    profile: UserProfile  # the user's profile after the activities
    learned: TenantProfile  # what they taught the tenant profile (to merge)
    view: TenantProfile  # the tenant profile as seen after them
    raised: tuple[Raised, ...]  # alerts to write: new, or open ones extended


# Two findings of one alert in one batch, as one: (the one kept so far, the new one).
Combine = Callable[[Finding, Finding], Finding]


def raise_once(
    raised: dict[str, Raised],
    profile: UserProfile,
    f: Finding,
    cfg: DetectorConfig,
    a: Activity,
    *,
    subject: str,
    combine: Combine = incidents.combine,
) -> tuple[UserProfile, Raised | None]:
    """The dedup rule. The finding raises or grows the alert its incident joins (`incidents.join`
    for `subject`: a user, or TENANT_WIDE), unless that alert was raised before and the finding
    does not extend it (a redelivery, or a repeat within the window); a second finding of an
    alert already raised in this batch is combined with the first and keeps its new/extends.
    Records the result in `raised` and the alert id in the profile; None when skipped."""
    profile, joined = incidents.join(profile, f, a.tenant_id, subject)
    if joined.skip:
        return profile, None
    known = raised.get(joined.alert_id)
    if known is not None:  # twice in this batch: one finding (new if the first was new)
        f = replace(combine(known.finding, f), extends=known.finding.extends)
    else:
        f = replace(f, extends=joined.extends)
    kept = raised[joined.alert_id] = Raised(f, cfg, a, joined.alert_id, joined.created)
    return profile.with_alert(joined.alert_id, utc(f.last)), kept


def latest(_: Finding, f: Finding) -> Finding:
    """A repeated policy's later finding of a burst already holds the earlier one's events."""
    return f


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
            users: dict[str, tuple[str, ...]] = dict.fromkeys(
                anonymous_ip.org_keys(ip), (a.actor_id,)
            )
            tenant = replace(tenant, anonymous_ip_users=users)
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


def fold_user(
    profile: UserProfile,
    view: TenantProfile,
    acts: list[Activity],
    detections: DetectorSet,
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
        profile, kept = raise_once(raised, profile, f, cfg, a, subject=a.actor_id)
        if kept is None:
            return  # already raised: a redelivery, or a repeat within the window
        f = kept.finding
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


def users_of(
    acts: list[Activity], terminations: bool = True
) -> dict[str, tuple[list[Activity], list[Activity] | None]]:
    """One tenant's batch as it is folded: per user, their own activities in event-time order
    and the batch's switches of their account (when `terminations`: the terminated-user
    detection is on); the accounts switched come first, even with no activity of their own."""
    own: dict[str, list[Activity]] = {}
    for a in sorted(acts, key=lambda x: (utc(x.time), x.event_id)):
        own.setdefault(a.actor_id, []).append(a)
    switches = switches_by_target([a for xs in own.values() for a in xs]) if terminations else {}
    users: dict[str, list[Activity]] = {**{u: [] for u in switches}, **own}
    return {u: (xs, switches.get(u)) for u, xs in users.items()}


def fold_tenant_wide(
    profile: UserProfile,
    view: TenantProfile,
    acts: list[Activity],
    detections: DetectorSet,
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
                profile, _ = raise_once(
                    raised, profile, f, cfg, a, subject=TENANT_WIDE, combine=latest
                )
    return profile, tuple(raised.values())
