"""Unusual impersonated activity: an impersonated action uncommon for this user.

Dormant for Workplace until it sends impersonation events (`Activity.impersonated`).
"""

from __future__ import annotations

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.profiles import TenantProfile, UserProfile
from shared.detection.unusual_activity import unusual

DETECTOR_ID = "vigil.unusual_impersonation"


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    if not obs.activity.impersonated:
        return profile, []
    found = unusual(
        DETECTOR_ID, "impersonated", profile.impersonated, profile, obs, cfg, ("T1134",)
    )
    return profile, found
