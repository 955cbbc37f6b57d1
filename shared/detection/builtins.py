"""The eight built-in detections, and their configuration merged from the policies folder."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.detection import (
    anonymous_ip,
    failed_logins,
    impossible_travel,
    infrequent_country,
    suspicious_ip,
    terminated_user,
    unusual_admin,
    unusual_impersonation,
)
from shared.detection.base import Detection, DetectorConfig, GovernanceStep

BUILTINS: tuple[Detection, ...] = (
    Detection(anonymous_ip.DETECTOR_ID, anonymous_ip.detect, geo=True),
    Detection(infrequent_country.DETECTOR_ID, infrequent_country.detect, geo=True),
    Detection(suspicious_ip.DETECTOR_ID, suspicious_ip.detect, geo=True),
    Detection(impossible_travel.DETECTOR_ID, impossible_travel.detect, geo=True),
    Detection(terminated_user.DETECTOR_ID, terminated_user.detect),
    Detection(failed_logins.DETECTOR_ID, failed_logins.detect),
    Detection(unusual_admin.DETECTOR_ID, unusual_admin.detect),
    Detection(unusual_impersonation.DETECTOR_ID, unusual_impersonation.detect),
)
DETECTOR_IDS = tuple(d.id for d in BUILTINS)


def configure(
    configured: dict[str, DetectorConfig],
    *,
    learning: timedelta,
    failed_login_threshold: int = 10,
    failed_login_window_minutes: int = 5,
    failed_login_actions: tuple[str, ...] = (),
) -> tuple[tuple[Detection, DetectorConfig], ...]:
    """Each built-in with its configuration: the policy file's, else the defaults (enabled).

    Multiple failed logins takes its floor and window from the FAILED_LOGIN_* settings unless the
    policy sets `params`, and its governance from FAILED_LOGIN_ACTIONS unless the policy sets it.
    """
    out = []
    for d in BUILTINS:
        cfg = configured.get(d.id, DetectorConfig(d.id))
        cfg = replace(cfg, learning=learning)
        if d.id == failed_logins.DETECTOR_ID:
            params = {
                "threshold": failed_login_threshold,
                "window_minutes": failed_login_window_minutes,
                **cfg.params,
            }
            governance = cfg.governance or tuple(GovernanceStep(a) for a in failed_login_actions)
            cfg = replace(cfg, params=params, governance=governance)
        out.append((d, cfg))
    return tuple(out)


def unknown_ids(configured: dict[str, DetectorConfig]) -> list[str]:
    return sorted(set(configured) - set(DETECTOR_IDS))
