"""Multiple failed logins: more failures in M minutes than the user's baseline, or a hard floor.

The hard floor (more than FAILED_LOGIN_THRESHOLD in FAILED_LOGIN_WINDOW_MINUTES, MDCA's template
"> 10 in 5 minutes") fires even during the learning period. After it, the threshold is the lower
of the floor and the user's baseline: twice their busiest window of the past 30 days (at least
`baseline_minimum`). A burst is raised once while it continues: later failures within the window
of the last extend the same alert; a new burst after a quiet window is a new alert.

The baseline is for failures from elsewhere: a failure from the user's own ISP in their own
country (both used on three days or more) is their device (a mistyped password, a mail app
retrying the old password after a reset, MDCA's benign causes), held to the hard floor only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.bursts import Decision, busiest_window_with, fold
from shared.detection.impossible_travel import COMMON_DAYS
from shared.detection.profiles import BurstState, Failure, OpenBurst, TenantProfile, UserProfile
from shared.models import Activity, utc

DETECTOR_ID = "vigil.multiple_failed_logins"
UserState = BurstState  # the failed-login slice of a user's profile
BASELINE_DAYS = 30
__all__ = ["DETECTOR_ID", "Decision", "Failure", "OpenBurst", "UserState", "decide", "detect"]


def is_failed_login(a: Activity) -> bool:
    return a.type == "login_failed"


def decide(
    state: UserState, activity: Activity, *, tenant_id: str, threshold: int, window: timedelta
) -> tuple[UserState, Decision | None]:
    """Fold one activity into the user's failures; return the alert it raises or extends."""
    if not is_failed_login(activity):
        return state, None
    failure = Failure(utc(activity.time), activity.event_id, activity.ip, activity.country)
    key = f"{DETECTOR_ID}|{tenant_id}|{activity.actor_id}"
    return fold(state, failure, key=key, more_than=threshold, window=window)


def own_device(profile: UserProfile, obs: Observation) -> bool:
    """From the ISP and country the user commonly signs in from: the user's own device."""
    ip = obs.ip
    isp = profile.isps.get(ip.isp) if ip.isp else None
    country = profile.countries.get(ip.country) if ip.country else None
    return (
        isp is not None
        and country is not None
        and isp.days >= COMMON_DAYS
        and country.days >= COMMON_DAYS
    )


def baseline_threshold(peaks: dict[str, int], day: str, multiplier: int, minimum: int) -> int:
    """More than this many failures in a window is unusual for this user (days before `day`)."""
    first = (datetime.fromisoformat(day) - timedelta(days=BASELINE_DAYS)).date().isoformat()
    usual = max((n for d, n in peaks.items() if first <= d < day), default=0)
    return max(minimum, multiplier * usual)


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    a = obs.activity
    if not is_failed_login(a):
        return profile, []
    floor = int(cfg.params.get("threshold", 10))
    window = timedelta(minutes=int(cfg.params.get("window_minutes", 5)))
    day = utc(a.time).date().isoformat()
    threshold, basis = floor, "hard floor"
    if not obs.user_learning and not own_device(profile, obs):
        base = baseline_threshold(
            profile.failed_peaks,
            day,
            int(cfg.params.get("baseline_multiplier", 2)),
            int(cfg.params.get("baseline_minimum", 5)),
        )
        if base < floor:
            threshold, basis = base, "user baseline"
    state, decision = decide(
        profile.failed, a, tenant_id=a.tenant_id, threshold=threshold, window=window
    )
    if state == profile.failed:
        return profile, []
    busiest = len(busiest_window_with(utc(a.time), list(state.failures), window))
    peaks = {**profile.failed_peaks, day: max(busiest, profile.failed_peaks.get(day, 0))}
    peaks = dict(sorted(peaks.items())[-BASELINE_DAYS - 1 :])
    profile = profile.evolve(failed=state, failed_peaks=peaks)
    if decision is None:
        return profile, []
    fails = decision.failures
    ips = sorted({f.ip for f in fails if f.ip})
    countries = sorted({f.country for f in fails if f.country})
    minutes = int(window.total_seconds() // 60)
    who = a.actor_email or a.actor_id
    return profile, [
        Finding(
            detector_id=DETECTOR_ID,
            window=decision.alert_id,
            title=f"Multiple failed login attempts for {who}",
            description=(
                f"{len(fails)} failed logins for {who} within {minutes} minutes (alerting above "
                f"{threshold}, the {basis}), from {', '.join(ips) or 'unknown IPs'}"
                f"{' in ' + ', '.join(countries) if countries else ''}."
            ),
            severity="medium",
            category="CredentialAccess",
            mitre_techniques=("T1110",),
            facts={
                "failed_logins": len(fails),
                "threshold": threshold,
                "threshold_basis": basis,
                "hard_floor": floor,
                "window_minutes": minutes,
                "ips": ips,
                "countries": countries,
                "first": decision.first.isoformat(),
                "last": decision.last.isoformat(),
            },
            first=decision.first,
            last=decision.last,
            activity_ids=tuple(f.event_id for f in fails[-50:]),
            event_count=len(fails),
            extends=not decision.new,
            recommended_actions=(
                "Check with the user; if they did not fail these logins, require them to sign in "
                "again and reset their password. Benign causes: an app retrying old credentials, "
                "a recent password change, MFA trouble."
            ),
        )
    ]
