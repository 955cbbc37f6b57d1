"""What an outside tester tries against the running stack, beyond the malformed parameters of
tests/test_api_input_errors.py: the headers of every kind of answer, poison messages on the
queues, formula injection into the CSV export, and secrets in the log while all of it happens.

Everything runs through the local functions host, on real Azurite, with the simulated Workplace
and Graph; queue triggers are fired explicitly.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from local.scenario import brute_force
from local.stack import APP_SECRET, VERIFY_TOKEN, Stack, local_stack
from shared import storage as st
from shared.quarantine import QUEUE_PARTITION
from shared.services import get_services

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
QUEUES = ("detect_queue", "govern_queue", "notify_queue")


@pytest.fixture(scope="module")
def stack(azurite_connection_string: str) -> Iterator[Stack]:
    # Two deliveries, no visibility delay: a message that is retried reaches `-poison` at once.
    poison_fast = {
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:00",
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "2",
    }
    with local_stack(port=None, triggers=False, extra_env=poison_fast) as s:
        assert s.install().status_code == 200
        yield s


def queue_name(function: str) -> str:
    settings = get_services().settings
    return {
        "detect_queue": settings.activity_queue,
        "govern_queue": settings.govern_queue,
        "notify_queue": settings.notify_queue,
    }[function]


def quarantined(prefix: str) -> list[dict[str, object]]:
    rows = get_services().storage.table(st.QUARANTINE).list_entities()
    return [r for r in rows if r["PartitionKey"] == QUEUE_PARTITION and prefix in r["Reason"]]


# ------------------------------------------------------------------------------ headers


def test_every_kind_of_answer_carries_the_security_headers(stack: Stack) -> None:
    api = stack.api
    answers = {
        "json": requests.get(f"{api}/alerts", headers=stack.as_reader(), timeout=30),
        "json error": requests.get(f"{api}/alerts", timeout=30),
        "html page": requests.get(f"{api}/workplace/callback", params={"error": "x"}, timeout=30),
        "redirect": requests.get(
            f"{api}/workplace/install",
            headers={"x-functions-key": stack.function_key},
            allow_redirects=False,
            timeout=30,
        ),
        "text": stack.verify_subscription(),
        "console": requests.get(f"{api}/console", timeout=30),
        "console file": requests.get(f"{api}/console/app.js", timeout=30),
    }
    for kind, answer in answers.items():
        assert answer.status_code < 500, (kind, answer.status_code)
        h = answer.headers
        assert h.get("X-Content-Type-Options") == "nosniff", kind
        assert h.get("X-Frame-Options") == "DENY", kind
        assert "frame-ancestors 'none'" in h.get("Content-Security-Policy", ""), kind
        assert h.get("Referrer-Policy") == "no-referrer", kind
        if kind.startswith("console"):
            assert "script-src 'self'" in h["Content-Security-Policy"], kind
        else:
            # Nothing may run in an answer opened as a page, and no cache keeps an answer.
            assert h["Content-Security-Policy"].startswith("default-src 'none'"), kind
            assert h.get("Cache-Control") == "no-store", kind


def test_a_command_body_over_the_limit_is_a_413_naming_it(stack: Stack) -> None:
    answer = requests.patch(
        f"{stack.api}/alerts/any",
        data=json.dumps({"comment": "x" * 70_000}).encode(),
        headers={**stack.as_analyst(), "X-Requested-With": "x"},
        timeout=30,
    )
    assert answer.status_code == 413, answer.text[:300]
    assert answer.json()["error"] == {"status": 413, "message": "body: at most 65536 bytes"}


# ------------------------------------------------------------------------------ queues


def _packed(rows: bytes) -> str:
    z = base64.b64encode(zlib.compress(rows)).decode()
    return json.dumps({"v": 2, "f": ["time"], "z": z})


# What each queue's refusal says (after the queue's name).
REFUSAL = {
    "detect_queue": "detection message must be",
    "govern_queue": "governance message must",
    "notify_queue": "notify message",
}
POISON: dict[str, list[str]] = {
    "detect_queue": [
        "not json",
        '{"v": 3}',
        '{"pk": "x", "rks": []}',
        '{"v": 2, "f": ["time"], "z": "!!!"}',
        _packed(b"[" * 100_000 + b"]" * 100_000),  # nested beyond the parser
        _packed(b" " * (20 * 1024 * 1024) + b"[]"),  # 20 MiB from 20 KiB: a zip bomb
    ],
    "govern_queue": [
        '{"tenant": 1}',
        "[" * 5000 + "]" * 5000,
        "\ufffd\ufffd",
        '{"tenant": "1", "alert": "x", "action": "delete_everything"}',
    ],
    "notify_queue": [
        '{"alert": "x"}',
        '{"tenant": "1", "alert": "x", "destination": "pager"}',
        "[" * 5000 + "]" * 5000,
    ],
}


@pytest.mark.parametrize("function", QUEUES)
def test_a_malformed_message_is_quarantined_with_its_reason_at_once(
    stack: Stack, function: str
) -> None:
    svc = get_services()
    name = queue_name(function)
    queue, poison = svc.storage.queue(name), svc.storage.queue(f"{name}-poison")
    before = len(quarantined(f"{function}: {REFUSAL[function]}"))
    for body in POISON[function]:
        queue.send_message(body)
    deliveries = 0
    while handled := stack.host.process_queue_once(function):
        deliveries += handled
    assert deliveries == len(POISON[function])  # each taken once: no retry would read it
    assert list(poison.receive_messages()) == []
    kept = quarantined(f"{function}: {REFUSAL[function]}")
    assert len(kept) - before == len(POISON[function])


def test_poison_messages_never_hold_back_the_good_ones(stack: Stack) -> None:
    svc, wp = get_services(), stack.workplace
    queue = svc.storage.queue(svc.settings.activity_queue)
    for poison in POISON["detect_queue"][:3]:
        queue.send_message(poison)  # ahead of the good work in the queue
    victim = wp.members[2]
    for d in brute_force(wp, victim, START):
        body = wp.security_envelope(list(d.changes), entry_time=1)
        assert wp.deliver(stack.webhook_url, body).status_code == 200
    stack.host.run_timer("sync_timer")
    while stack.host.process_queue_once("detect_queue"):
        pass
    alerts = [a for a in svc.alerts.for_tenant(wp.community_id) if a.user_email == victim.email]
    assert alerts, "the attack after the poison messages was not detected"


# ------------------------------------------------------------------------------ CSV


FORMULAS = ('=HYPERLINK("http://x.example","y")', "+1+1", "-2+3", "@SUM(A1:A2)")


def test_the_csv_export_never_hands_a_spreadsheet_a_formula(stack: Stack) -> None:
    wp = stack.workplace
    member, at = wp.members[3], START + timedelta(days=1)
    changes = [
        wp.change(
            "LOGIN",
            actor=member,
            ip="198.51.100.9",
            ip_country="US",
            timestamp=at + timedelta(minutes=i),
            useragent=formula,
        )
        for i, formula in enumerate(FORMULAS)
    ]
    assert wp.deliver(stack.webhook_url, wp.security_envelope(changes)).status_code == 200
    stack.host.run_timer("sync_timer")
    answer = requests.get(
        f"{stack.api}/activities",
        params={
            "from": at.isoformat(),
            "to": (at + timedelta(hours=1)).isoformat(),
            "tenant": wp.community_id,
            "format": "csv",
        },
        headers=stack.as_reader(),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:300]
    rows = list(csv.reader(io.StringIO(answer.text)))
    cells = [cell for row in rows[1:] for cell in row]
    assert {f"'{f}" for f in FORMULAS} <= set(cells)
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]


# ------------------------------------------------------------------------------ the log


def test_no_secret_reaches_the_log_while_attacked(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = stack.api
    requests.get(f"{api}/workplace/status", params={"code": stack.function_key}, timeout=30)
    requests.get(f"{api}/alerts", params={"top": "9" * 5000}, headers=stack.as_reader(), timeout=30)
    requests.patch(
        f"{api}/alerts/x",
        data=b"[" * 5000,
        headers={**stack.as_analyst(), "X-Requested-With": "x"},
        timeout=30,
    )
    stack.verify_subscription()
    stack.workplace.deliver(stack.webhook_url, b'{"object": NaN}')
    stack.host.run_timer("sync_timer")
    text = caplog.text
    assert "Executed" in text  # the host's lines were captured
    for secret in (
        stack.function_key,
        stack.analyst_token,
        stack.reader_token,
        APP_SECRET,
        VERIFY_TOKEN,
    ):
        assert secret not in text
