"""What every detection shares: the observation it judges, its configuration, and its finding.

A detection is a pure function `decide(profile, tenant, observation, config)` returning the
user's updated profile and its findings. Storage and directory lookups happen before (in the
engine) and IP lookups in the fold (`fold.py`); dedup after (the fold), then alerts, caps and
governance (the engine's alert writer).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.detection.profiles import Hop, TenantProfile, UserProfile
from shared.ipintel import IpInfo
from shared.models import Activity, Severity, utc

# Accuracy assumed for coordinates a source sends with an activity (Entra geolocates the sign-in
# IP to a city): the padding impossible travel gives each side.
SOURCE_COORDINATES_RADIUS_KM = 50.0

Sensitivity = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class Directory:
    """What the directories say about the actor, looked up before the decision."""

    workplace_status: str = ""  # active | deactivated | deleted | "" (unknown)
    workplace_deactivated_at: datetime | None = None
    is_admin: bool = False
    auth_method: str = ""  # sso | password | "" (Workplace's record)
    entra: str = ""  # enabled | disabled | absent | "" (not checked)
    # The user's Workplace groups, each by id and by lower-cased name (what scopes name them by).
    groups: frozenset[str] = frozenset()

    @property
    def entra_terminated(self) -> str:
        """disabled, or deleted (absent from Entra although the user signs in with SSO)."""
        if self.entra == "disabled":
            return "disabled"
        return "deleted" if self.entra == "absent" and self.auth_method == "sso" else ""


@dataclass(frozen=True)
class Observation:
    activity: Activity
    ip: IpInfo
    user_learning: bool  # the user's learning period (event time) is not over yet
    tenant_learning: bool
    directory: Directory = field(default_factory=Directory)

    @functools.cached_property
    def geo_eligible(self) -> bool:
        """Geo detections skip failed and non-interactive activities, those with no IP, and
        impersonated ones (an integration or admin acting for the user shows where the
        impersonator runs, not where the user is)."""
        a = self.activity
        return a.outcome == "success" and a.interactive and bool(a.ip) and not a.impersonated

    @functools.cached_property
    def hop(self) -> Hop | None:
        """Where the activity places the user (for impossible travel), if the IP is located."""
        ip, a = self.ip, self.activity
        if a.latitude is not None and a.longitude is not None:
            # The source's own coordinates (Entra's sign-in location): a city, not a country.
            lat, lon, radius = a.latitude, a.longitude, SOURCE_COORDINATES_RADIUS_KM
            country = a.country or ip.country
        elif ip.latitude is None or ip.longitude is None:
            return None
        else:
            lat, lon, radius, country = ip.latitude, ip.longitude, ip.radius_km or 0.0, ip.country
        return Hop(
            utc(a.time),
            a.event_id,
            ip.ip,
            country,
            lat,
            lon,
            radius,
            ip.isp,
            ip.safe,
            ip.no_physical_location,
        )


@dataclass(frozen=True)
class GovernanceStep:
    action: str
    approval_required: bool = False


@dataclass(frozen=True)
class DetectorConfig:
    """A detection's switches, from the policies folder (or the defaults)."""

    id: str
    enabled: bool = True
    include_users: frozenset[str] = frozenset()  # ids or e-mails; empty: everyone
    exclude_users: frozenset[str] = frozenset()  # never alert, even when included
    include_groups: frozenset[str] = frozenset()  # group ids or lower-cased names
    exclude_groups: frozenset[str] = frozenset()  # never alert, even when in an included group
    sensitivity: Sensitivity = "medium"
    severity: Severity | None = None  # overrides the detection's own
    daily_limit: int = 0  # alerts per tenant per event day; 0: no limit (never limits governance)
    governance: tuple[GovernanceStep, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    learning: timedelta = timedelta(days=7)

    @property
    def scoped(self) -> bool:
        """Whether a scope is set at all (else everyone is in it, with nothing to check)."""
        return bool(
            self.include_users or self.exclude_users or self.include_groups or self.exclude_groups
        )

    @property
    def scopes_groups(self) -> bool:
        """Whether the scope needs the actor's groups (the engine then looks them up)."""
        return bool(self.include_groups or self.exclude_groups)

    def in_scope(self, a: Activity, groups: frozenset[str] = frozenset()) -> bool:
        """MDCA's scope: only included users or group members alert (when any inclusion is
        set), and excluded users or group members never do, even when also included."""
        who = {a.actor_id, a.actor_email.lower()} - {""}
        if who & self.exclude_users or groups & self.exclude_groups:
            return False
        if not self.include_users and not self.include_groups:
            return True
        return bool(who & self.include_users or groups & self.include_groups)


@dataclass(frozen=True)
class Finding:
    """An alert to raise (or, with `extends`, an open alert to update)."""

    detector_id: str
    window: str  # with detector, tenant and user it identifies the alert: the dedup key
    title: str
    description: str
    severity: Severity
    category: str
    mitre_techniques: tuple[str, ...]
    facts: dict[str, Any]
    first: datetime
    last: datetime
    activity_ids: tuple[str, ...]
    suppressions_evaluated: tuple[str, ...] = ()
    event_count: int = 1
    extends: bool = False
    policy_id: str = ""  # activity policies: the policy id (builtins: the detector id)
    recommended_actions: str = ""
    isp: str = ""  # the ISP alerted on (feeds the tenant suppression tier)


Detect = Callable[
    [UserProfile, TenantProfile, Observation, DetectorConfig],
    tuple[UserProfile, list[Finding]],
]


@dataclass(frozen=True)
class Detection:
    id: str
    decide: Detect
    geo: bool = False  # skips failed and non-interactive activities
