"""Unusual administrative activity: an admin action uncommon for this user (per-user baseline)."""

from __future__ import annotations

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.profiles import TenantProfile, UserProfile
from shared.detection.unusual_activity import unusual

DETECTOR_ID = "vigil.unusual_admin"


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    if not obs.activity.administrative:
        return profile, []
    found = unusual(DETECTOR_ID, "administrative", profile.admin, profile, obs, cfg, ("T1098",))
    return profile, found
