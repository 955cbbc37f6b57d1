"""Telemetry: Azure Monitor through OpenTelemetry when configured, free no-ops otherwise.

`configure()` runs once per process (from `function_app.create_app()`). Only when
APPLICATIONINSIGHTS_CONNECTION_STRING is set does it import azure-monitor-opentelemetry and send
traces, logs and Vigil's metrics; without it nothing is imported and every counter below is a
no-op, so `from function_app import app` stays fast and side-effect free locally and in tests.

The counters are cheap to call from anywhere in `shared` (one attribute check when off):
`activities_ingested(n)`, `alerts_raised(n)`, `action_taken(action, status)`, `sync_lag(seconds)`.

No secret leaves in telemetry: every span's URL attributes lose their query string
(`telemetry_spans.UrlQueryRemover`), and urllib3's DEBUG lines, which hold request URLs, lose
theirs whether or not telemetry is on (`logsafe.redact_urllib3_logs`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from shared.config import ConfigError, TelemetrySettings
from shared.logsafe import redact_urllib3_logs

log = logging.getLogger(__name__)

METER_NAME = "vigil"
# The domain logs under `shared.*`; the distro exports those records as Application Insights
# traces. The host keeps collecting its own logs and the function invocations as before.
LOGGER_NAME = "shared"


@dataclass(frozen=True)
class TelemetryTarget:
    """Where telemetry goes, and whether it carries an Entra token (and whose)."""

    connection_string: str
    entra: bool  # True: authenticate with a managed identity (the component's local auth is off)
    client_id: str | None = None  # that user-assigned identity; None: the system-assigned one


def target_from(settings: TelemetrySettings) -> TelemetryTarget | None:
    """The telemetry target the settings describe, or None when telemetry is off."""
    if not settings.appinsights_connection_string:
        return None
    entra, client_id = parse_authentication(settings.appinsights_authentication_string)
    return TelemetryTarget(settings.appinsights_connection_string, entra, client_id)


def parse_authentication(authentication_string: str | None) -> tuple[bool, str | None]:
    """(Entra auth?, client id) from `ClientId=<id>;Authorization=AAD` (the host's format)."""
    if not authentication_string:
        return False, None
    fields = {
        key.strip().lower(): value.strip()
        for key, _, value in (part.partition("=") for part in authentication_string.split(";"))
        if key.strip()
    }
    if fields.get("authorization", "").upper() != "AAD":
        raise ConfigError(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING must be "
            "'ClientId=<managed identity client id>;Authorization=AAD' "
            "(or 'Authorization=AAD' for the system-assigned identity)"
        )
    return True, fields.get("clientid") or None


@dataclass(frozen=True)
class _Instruments:
    activities: Any  # opentelemetry.metrics.Counter
    alerts: Any  # Counter
    actions: Any  # Counter
    lag: Any  # Histogram


_lock = threading.Lock()
_configured = False
_instruments: _Instruments | None = None


def configure(settings: TelemetrySettings | None = None) -> bool:
    """Set up Azure Monitor once if the settings ask for it; returns whether telemetry is on.

    Called by the app's start (`function_app.create_app`), never at import. It reads only the
    telemetry settings (uncached), so it neither fixes the settings `get_settings()` later caches
    nor fails on another feature's. An invalid setting, or an exporter that cannot start, leaves
    telemetry off with a warning that says why; the functions run regardless.
    """
    global _configured, _instruments
    with _lock:
        if _configured:
            return _instruments is not None
        _configured = True
        redact_urllib3_logs()
        try:
            target = target_from(settings or TelemetrySettings.from_env())
        except ConfigError as exc:
            log.warning("telemetry off: %s", exc)
            return False
        if target is None:
            return False
        try:
            _instruments = _start(target)
        except Exception as exc:  # monitoring must never stop detection and response
            log.warning(
                "telemetry off: Azure Monitor could not start: %s: %s", type(exc).__name__, exc
            )
            return False
        return True


def _start(target: TelemetryTarget) -> _Instruments:
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry import metrics

    from shared.telemetry_spans import UrlQueryRemover

    credential: Any = None
    if target.entra:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=target.client_id)
    configure_azure_monitor(
        connection_string=target.connection_string,
        credential=credential,
        logger_name=LOGGER_NAME,
        enable_live_metrics=False,
        span_processors=[UrlQueryRemover()],
    )
    meter = metrics.get_meter(METER_NAME)
    return _Instruments(
        activities=meter.create_counter(
            "vigil.activities.ingested", unit="{activity}", description="Activities stored"
        ),
        alerts=meter.create_counter(
            "vigil.alerts.raised", unit="{alert}", description="Alerts raised by detections"
        ),
        actions=meter.create_counter(
            "vigil.actions.taken", unit="{action}", description="Governance actions by outcome"
        ),
        lag=meter.create_histogram(
            "vigil.sync.lag",
            unit="s",
            description="Seconds from an activity's event time to its storage by sync",
        ),
    )


def activities_ingested(count: int, source: str = "workplace") -> None:
    if _instruments is not None and count:
        _instruments.activities.add(count, {"source": source})


def alerts_raised(count: int = 1, detection: str = "") -> None:
    if _instruments is not None and count:
        _instruments.alerts.add(count, {"detection": detection})


def action_taken(action: str, status: str, mode: str = "") -> None:
    if _instruments is not None:
        _instruments.actions.add(1, {"action": action, "status": status, "mode": mode})


def sync_lag(seconds: float, source: str = "workplace") -> None:
    if _instruments is not None:
        _instruments.lag.record(max(0.0, seconds), {"source": source})


def reset_for_tests() -> None:
    """Forget the one-time configuration (tests only; the SDK's global providers stay)."""
    global _configured, _instruments
    with _lock:
        _configured, _instruments = False, None
