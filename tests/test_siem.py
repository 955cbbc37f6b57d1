"""The SIEM export against the local Logs Ingestion endpoint over HTTP: azure-monitor-ingestion's
real client, signed in by azure-identity's real ManagedIdentityCredential through the App
Service identity protocol, and Azurite for the outbox. Sent once, in batches, kept when refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

import detect_queue
from local.sim_logs_ingestion import SimulatedLogsIngestion
from shared import services
from shared.models import Alert, Evidence
from shared.notify.delivery import process_message
from shared.notify.requests import NotifyRequest
from shared.services import Services
from shared.siem import export as siem_export
from tests.detect_samples import act

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TENANT = "community1"
ALERTS = "Custom-VigilAlerts_CL"
ACTIVITIES = "Custom-VigilActivities_CL"


@pytest.fixture
def ingestion(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedLogsIngestion]:
    with SimulatedLogsIngestion() as sim:
        # As on App Service: azure-identity finds the managed identity endpoint here.
        monkeypatch.setenv("IDENTITY_ENDPOINT", sim.identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)
        yield sim


def siem_env(
    vigil_env: dict[str, str],
    sim: SimulatedLogsIngestion,
    monkeypatch: pytest.MonkeyPatch,
    **extra: str,
) -> Services:
    env = {
        "NOTIFY_QUEUE": f"{vigil_env['STORAGE_PREFIX']}-notify",
        "LOG_ANALYTICS_DCE_ENDPOINT": sim.endpoint,
        "LOG_ANALYTICS_DCR_ID": sim.rule_id,
        **extra,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    services.reset()
    return services.get_services()


@pytest.fixture
def ssvc(
    vigil_env: dict[str, str], ingestion: SimulatedLogsIngestion, monkeypatch: pytest.MonkeyPatch
) -> Services:
    return siem_env(vigil_env, ingestion, monkeypatch)


def stored(svc: Services, severity: str = "low", facts: dict[str, Any] | None = None) -> str:
    alert = Alert(
        id=uuid.uuid4().hex,
        tenant_id=TENANT,
        source="workplace",
        detector_id="vigil.anonymous_ip",
        title="Activity from an anonymous IP address",
        description="Tor exit",
        severity=severity,  # type: ignore[arg-type]
        category="InitialAccess",
        mitre_techniques=("T1090",),
        user_id="100",
        user_email="alice@contoso.com",
        first_activity_time=NOW,
        last_activity_time=NOW,
        created_time=NOW,
        evidence=Evidence(facts or {"ip": "203.0.113.9"}, ("e1",)),
        dedup_key=uuid.uuid4().hex,
    )
    svc.notify_alert(alert)  # what detection does for each new alert
    return svc.alerts.save(alert)


def drain_notify(svc: Services) -> int:
    """Deliver every notify message on the queue (Azurite), as notify_queue does."""
    queue = svc.storage.queue(svc.settings.notify_queue)
    done = 0
    while batch := list(queue.receive_messages(messages_per_page=32, max_messages=32)):
        for m in batch:
            process_message(svc.notifier, m.content, NOW)
            queue.delete_message(m)
            done += 1
    return done


def run_export(svc: Services) -> siem_export.ExportResult:
    s = svc.settings
    return siem_export.export(svc.siem_outbox, svc.siem_client, s, svc.activities.load, NOW)


def test_alerts_of_any_severity_go_to_log_analytics_in_one_batch_once(
    ssvc: Services, ingestion: SimulatedLogsIngestion
) -> None:
    keys = [stored(ssvc) for _ in range(25)]
    assert drain_notify(ssvc) == 25  # queued although no notification destination is set
    result = run_export(ssvc)
    assert (result.requests, result.rows, result.failed) == (1, 25, 0)
    (upload,) = ingestion.uploads(ALERTS)
    assert upload.gzipped
    ids = sorted(r["AlertId"] for r in upload.rows)
    assert ids == sorted(ssvc.alerts.get(TENANT, k).id for k in keys)  # type: ignore[union-attr]
    row = upload.rows[0]
    assert row["TimeGenerated"] == NOW.isoformat() and row["Severity"] == "low"
    assert row["Alert"]["detectorId"] == "vigil.anonymous_ip"

    # A redelivered notify message, and the next runs: nothing is sent again.
    for key in keys[:5]:
        message = NotifyRequest(TENANT, key).to_message().encode()
        process_message(ssvc.notifier, message, NOW)
    assert run_export(ssvc).rows == 0
    assert len(ingestion.uploads()) == 1


def test_a_refused_batch_waits_for_the_next_run_and_is_then_sent_once(
    ssvc: Services, ingestion: SimulatedLogsIngestion
) -> None:
    for _ in range(3):
        stored(ssvc)
    drain_notify(ssvc)
    ingestion.fail(503, times=10)  # more than the SDK's own retries
    failed = run_export(ssvc)
    assert (failed.rows, failed.failed) == (0, 1)
    assert ingestion.uploads() == [] and set(ingestion.refused) == {503}
    ingestion.clear_faults()  # the outage is over
    assert run_export(ssvc).rows == 3
    assert run_export(ssvc).rows == 0
    ids = [r["AlertId"] for r in ingestion.rows(ALERTS)]
    assert len(ids) == len(set(ids)) == 3


def test_batches_are_cut_under_the_request_limit_and_each_alert_sent_once(
    ssvc: Services, ingestion: SimulatedLogsIngestion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(siem_export, "MAX_REQUEST_BYTES", 6_000)
    for _ in range(12):
        stored(ssvc, facts={"note": "x" * 1500})
    drain_notify(ssvc)
    result = run_export(ssvc)
    assert result.requests == len(ingestion.uploads()) > 2
    for upload in ingestion.uploads():
        assert len(b"".join(str(r).encode() for r in upload.rows)) < 12_000
    ids = [r["AlertId"] for r in ingestion.rows(ALERTS)]
    assert len(ids) == len(set(ids)) == 12


def test_activities_go_to_their_own_stream_when_asked_once_per_detected_batch(
    vigil_env: dict[str, str], ingestion: SimulatedLogsIngestion, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = siem_env(vigil_env, ingestion, monkeypatch, LOG_ANALYTICS_ACTIVITIES="true")
    activities = [act("login", at=NOW + timedelta(minutes=i)) for i in range(4)]
    (batch,) = svc.activities.write(activities)
    message = QueueMessage(body=batch.to_message().encode())
    detect_queue.detect_queue(message)
    detect_queue.detect_queue(message)  # redelivered
    assert run_export(svc).rows == 4
    assert run_export(svc).rows == 0
    rows = ingestion.rows(ACTIVITIES)
    assert sorted(r["ActivityId"] for r in rows) == sorted(a.event_id for a in activities)
    assert {r["ActivityType"] for r in rows} == {"login"} and ingestion.rows(ALERTS) == []


def test_the_managed_identity_token_is_asked_for_the_monitor_resource(
    ssvc: Services, ingestion: SimulatedLogsIngestion, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored(ssvc)
    drain_notify(ssvc)
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")  # the platform's secret is wrong
    services.reset()
    svc = services.get_services()
    result = run_export(svc)
    assert (result.rows, result.failed) == (0, 1)  # no token, nothing sent; the rows wait
    assert ingestion.uploads() == []
    monkeypatch.setenv("IDENTITY_HEADER", ingestion.identity_header)
    services.reset()
    assert run_export(services.get_services()).rows == 1
