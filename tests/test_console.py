"""The analyst console in a real browser: Debian's headless Chromium driven by Playwright,
against the local stack (Azurite, simulated Workplace and Graph, the functions host).

A replayed password-guessing attack raises an alert; the analyst opens it in the console, sees
the burst on its time line, resolves it as a false positive with a suppression, and the API then
answers it resolved and the suppression exists. A Reader is offered no triage at all."""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from local.scenario import brute_force, ordinary_day
from local.stack import Stack, local_stack

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The README's screenshots: written to docs/ when CONSOLE_SCREENSHOTS=docs (so an ordinary test
# run leaves the tree clean), else to a scratch folder (the views are still rendered and saved).
DOCS = (
    Path(__file__).resolve().parent.parent / "docs"
    if os.environ.get("CONSOLE_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "vigil-console-screenshots"
)
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: `make browser` installs it"
    ),
]


@pytest.fixture(scope="module")
def stack(azurite_connection_string: str) -> Iterator[Stack]:
    with local_stack(port=None, triggers=False) as s:
        assert s.install().status_code == 200
        wp = s.workplace
        victim = wp.members[1]
        deliveries = ordinary_day(wp, START, random.Random(1)) + brute_force(
            wp, victim, START + timedelta(minutes=30)
        )
        for d in deliveries:
            body = wp.security_envelope(list(d.changes), entry_time=1)
            assert wp.deliver(s.webhook_url, body).status_code == 200
        s.host.run_timer("sync_timer")
        while s.host.process_queue_once("detect_queue") or s.host.process_queue_once(
            "govern_queue"
        ):
            pass
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def page_as(browser: Browser, token: str) -> Page:
    """A browser signed in the way App Service Authentication lets one in (a bearer token)."""
    context = browser.new_context(
        extra_http_headers={"Authorization": f"Bearer {token}"},
        viewport={"width": 1280, "height": 900},
    )
    return context.new_page()


def the_alert(stack: Stack) -> dict[str, object]:
    answer = requests.get(
        f"{stack.api}/alerts",
        params={"detector": "vigil.multiple_failed_logins"},
        headers=stack.as_analyst(),
        timeout=10,
    ).json()
    (alert,) = answer["value"]
    return dict(alert)


def test_console_is_served_under_a_strict_content_security_policy(stack: Stack) -> None:
    for path, kind in (("console", "text/html"), ("console/app.js", "text/javascript")):
        reply = requests.get(f"{stack.api}/{path}", timeout=10)
        assert reply.status_code == 200 and reply.headers["Content-Type"].startswith(kind)
        csp = reply.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    page = requests.get(f"{stack.api}/console", timeout=10).text
    assert "<script>" not in page and "<style" not in page and "://" not in page
    for bad in ("../host.json", ".hidden.js", "app.py", "nothing.js"):
        assert requests.get(f"{stack.api}/console/{bad}", timeout=10).status_code == 404


def test_me_tells_the_page_the_callers_roles(stack: Stack) -> None:
    reader = requests.get(f"{stack.api}/me", headers=stack.as_reader(), timeout=10).json()
    analyst = requests.get(f"{stack.api}/me", headers=stack.as_analyst(), timeout=10).json()
    assert (reader["roles"], reader["mayRespond"]) == (["Vigil.Reader"], False)
    assert analyst["mayRespond"] is True and "Vigil.Responder" in analyst["roles"]
    assert requests.get(f"{stack.api}/me", timeout=10).status_code == 401


def test_analyst_resolves_a_replayed_attack_as_false_positive(
    stack: Stack, browser: Browser
) -> None:
    alert = the_alert(stack)
    assert alert["detectorId"] == "vigil.multiple_failed_logins"
    page = page_as(browser, stack.analyst_token)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{stack.api}/console")
    expect(page.locator("#who")).to_contain_text("analyst@contoso.com")
    row = page.locator(f'#alerts tr[data-id="{alert["id"]}"]')
    expect(row).to_contain_text(str(alert["userEmail"]))
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "console-alerts.png"), full_page=True)

    row.click()
    expect(page.locator("h2")).to_have_text(str(alert["title"]))
    ticks = page.locator("#burst-timeline line.tick-failed")
    expect(ticks).to_have_count(14)  # the burst: fourteen failed logins on the time line
    expect(page.locator("#burst-summary")).to_contain_text("activities")
    expect(page.locator("#evidence")).to_contain_text("failed_logins")
    expect(page.locator("#suppressions")).to_be_visible()
    page.screenshot(path=str(DOCS / "console-alert.png"), full_page=True)

    form = page.locator("#triage")
    form.locator('select[name="status"]').select_option("resolved")
    form.locator('select[name="classification"]').select_option("falsePositive")
    form.locator('textarea[name="comment"]').fill("the user's own password manager")
    form.locator('input[name="suppress"]').fill("30")
    form.locator('button[type="submit"]').click()
    expect(page.locator(".notice")).to_contain_text("suppressed for 30 days")
    expect(page.locator("body")).to_contain_text("the user's own password manager")

    answer = requests.get(
        f"{stack.api}/alerts/{alert['id']}", headers=stack.as_analyst(), timeout=10
    )
    assert (answer.json()["status"], answer.json()["classification"]) == (
        "resolved",
        "falsePositive",
    )
    suppressions = requests.get(
        f"{stack.api}/suppressions", headers=stack.as_analyst(), timeout=10
    ).json()["value"]
    (made,) = [s for s in suppressions if s["alertId"] == alert["id"]]
    assert (made["detectorId"], made["createdBy"]) == (alert["detectorId"], "analyst@contoso.com")
    assert errors == []

    page.get_by_role("link", name="User page").click()
    expect(page.locator("h2")).to_have_text(f"User {alert['userEmail']}", timeout=30_000)
    to = datetime.fromisoformat(str(alert["lastActivityDateTime"])) + timedelta(minutes=1)
    window = {"from": (to - timedelta(days=7)).isoformat(), "to": to.isoformat()}
    failures = requests.get(
        f"{stack.api}/activities",
        params={**window, "user": str(alert["userEmail"]), "outcome": "failure", "top": "500"},
        headers=stack.as_analyst(),
        timeout=10,
    ).json()["value"]
    assert len(failures) >= 14
    expect(page.locator("#user-timeline line.tick-failed")).to_have_count(len(failures))
    page.screenshot(path=str(DOCS / "console-user.png"), full_page=True)
    page.goto(f"{stack.api}/console#/governance")
    expect(page.locator("table.actions")).to_contain_text("revoke_sessions")
    expect(page.locator('button[data-command="revert"]')).to_have_count(1)
    page.screenshot(path=str(DOCS / "console-governance.png"), full_page=True)
    page.context.close()


def test_a_reader_is_offered_no_triage(stack: Stack, browser: Browser) -> None:
    alert = the_alert(stack)
    page = page_as(browser, stack.reader_token)
    page.goto(f"{stack.api}/console#/alert/{alert['id']}")
    expect(page.locator("#who")).to_contain_text("Vigil.Reader")
    expect(page.locator("h2")).to_have_text(str(alert["title"]))
    expect(page.locator("#evidence")).to_be_visible()
    expect(page.locator("#triage")).to_have_count(0)
    page.goto(f"{stack.api}/console#/governance")
    expect(page.locator("table.actions")).to_contain_text("revoke_sessions")
    expect(page.locator("button[data-command]")).to_have_count(0)
    page.context.close()


def test_posture_view(stack: Stack, browser: Browser) -> None:
    stack.host.run_timer("posture_timer")
    page = page_as(browser, stack.reader_token)
    page.goto(f"{stack.api}/console#/posture")
    expect(page.locator(".posture h3").first).to_contain_text(re.compile("SSO"))
    page.screenshot(path=str(DOCS / "console-posture.png"), full_page=True)
    page.context.close()


def test_a_browser_signs_in_with_the_session_cookie(stack: Stack, browser: Browser) -> None:
    """Without a token the page offers App Service's sign-in; after it, the session cookie."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{stack.api}/console#/governance")
    page.locator("#sign-in").click()
    page.get_by_role("button", name=re.compile("reader@contoso.com")).click()
    expect(page.locator("#who")).to_contain_text("reader@contoso.com (Vigil.Reader)")
    expect(page.locator("table.actions")).to_contain_text("revoke_sessions")
    (cookie,) = context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        "AppServiceAuthSession",
        True,
        "Strict",
    )
    context.close()


def test_impossible_travel_is_drawn_on_the_map(stack: Stack, browser: Browser) -> None:
    """The detector's own finding (New York to Auckland in two hours), stored as the engine
    stores an alert, is drawn as two places with their radii and the trip's figures."""
    from shared.models import Alert, Evidence
    from shared.services import get_services
    from tests.test_detect_geo import trip

    (f,) = trip()
    tenant = stack.workplace.community_id
    alert = Alert(
        id="travel-" + f.window.replace("|", "-"),
        tenant_id=tenant,
        source="workplace",
        detector_id=f.detector_id,
        title=f.title,
        description=f.description,
        severity=f.severity,
        category=f.category,
        mitre_techniques=f.mitre_techniques,
        user_id="100000000000042",
        user_email="alice@contoso.com",
        first_activity_time=f.first,
        last_activity_time=f.last,
        created_time=f.first,
        evidence=Evidence(f.facts, f.activity_ids, f.suppressions_evaluated),
        dedup_key=f"{f.detector_id}|{tenant}|travel|{f.window}",
    )
    get_services().alerts.save(alert)
    page = page_as(browser, stack.reader_token)
    page.goto(f"{stack.api}/console#/alert/{alert.id}")
    expect(page.locator("#travel-map circle.place")).to_have_count(2)
    kms = [page.locator(f'#travel-map [data-place="{i}"]').get_attribute("data-km") for i in (0, 1)]
    assert kms == [str(f.facts["radius_from_km"]), str(f.facts["radius_to_km"])]
    summary = page.locator("#travel-summary")
    expect(summary).to_contain_text(f"{round(f.facts['effective_km'])} km apart")
    expect(summary).to_contain_text(f"{round(f.facts['kmh'])} km/h")
    expect(page.locator("#suppressions li")).to_have_count(len(f.suppressions_evaluated))
    page.screenshot(path=str(DOCS / "console-travel.png"), full_page=True)
    page.context.close()


def test_a_session_cookie_alone_cannot_act(stack: Stack, browser: Browser) -> None:
    """A cross-site form post carries the analyst's session cookie but no X-Requested-With: it is
    refused and nothing is acted on; the console's own request (with the header) is taken."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{stack.api}/console#/governance")
    page.locator("#sign-in").click()
    page.get_by_role("button", name=re.compile("analyst@contoso.com")).click()
    expect(page.locator("#who")).to_contain_text("Vigil.Responder")
    actions = requests.get(
        f"{stack.api}/governance/actions", headers=stack.as_analyst(), timeout=10
    ).json()["actions"]
    (action,) = [a for a in actions if a["action"] == "revoke_sessions"]
    url = f"{stack.api}/governance/actions/{action['id']}/revert"
    forged = context.request.post(
        url, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert forged.status == 403 and "X-Requested-With" in forged.text()
    after = requests.get(
        f"{stack.api}/governance/actions", headers=stack.as_analyst(), timeout=10
    ).json()["actions"]
    assert [a["status"] for a in after if a["id"] == action["id"]] == [action["status"]]
    context.close()


def test_the_queue_filters_and_pages(stack: Stack, browser: Browser) -> None:
    everything = requests.get(f"{stack.api}/alerts", headers=stack.as_reader(), timeout=10).json()[
        "value"
    ]
    assert len(everything) >= 2  # the replayed attack's, and the travel one
    page = page_as(browser, stack.reader_token)
    page.goto(f"{stack.api}/console#/alerts?top=1")
    rows = page.locator("#alerts tbody tr.row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", everything[0]["id"])  # newest first
    for shown in range(2, len(everything) + 1):
        page.locator("#more").click()
        expect(rows).to_have_count(shown)
    expect(page.locator("#more")).to_be_hidden()
    assert [rows.nth(i).get_attribute("data-id") for i in range(len(everything))] == [
        a["id"] for a in everything
    ]
    resolved = [
        a["id"] for a in everything if (a["status"], a["severity"]) == ("resolved", "medium")
    ]
    page.locator('form.filters select[name="status"]').select_option("resolved")
    page.locator('form.filters select[name="severity"]').select_option("medium")
    page.locator('form.filters button[type="submit"]').click()
    expect(page).to_have_url(re.compile("status=resolved"))
    expect(rows).to_have_count(len(resolved))
    assert [rows.nth(i).get_attribute("data-id") for i in range(len(resolved))] == resolved
    page.context.close()
