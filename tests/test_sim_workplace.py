"""The simulated Workplace tenant against its contract (workplace-api.md), over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from local.http import Request, Response, Server
from local.sim_workplace import EVENT_FIELDS, FIREFOX_USERAGENT, SimulatedWorkplace

APP_ID = "1234567890"
APP_SECRET = "wp-app-secret-for-tests"
REDIRECT_URI = "http://127.0.0.1:7071/api/workplace/callback"
ATTESTED_VALUE_FIELDS = set(
    """actor_community_id actor_scim_company_id actor_id actor_email target_id target_email ip
    timestamp event browser_name browser_os ip_country useragent target_community_id
    target_company_id""".split()
)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[SimulatedWorkplace]:
    with SimulatedWorkplace(app_id=APP_ID, app_secret=APP_SECRET, clock=clock) as running:
        yield running


def dialog(sim: SimulatedWorkplace, **params: Any) -> requests.Response:
    query: dict[str, Any] = {"app_id": APP_ID, "redirect_uri": REDIRECT_URI, "state": "nonce-1"}
    query.update(params)
    query = {k: v for k, v in query.items() if v is not None}
    return requests.get(sim.dialog_url, params=query, allow_redirects=False, timeout=5)


def callback_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(sim: SimulatedWorkplace, install_code: str, **overrides: str) -> requests.Response:
    params = {
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "redirect_uri": REDIRECT_URI,
        "code": install_code,
    }
    params.update(overrides)
    return requests.post(
        f"{sim.url}/v3.2/oauth/access_token", data=params, allow_redirects=False, timeout=5
    )


def install(sim: SimulatedWorkplace) -> str:
    code = callback_params(dialog(sim))["code"]
    response = exchange(sim, code)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def proof(token: str, when: int, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"{token}|{when}".encode(), hashlib.sha256).hexdigest()
    return {"appsecret_proof": digest, "appsecret_time": str(when)}


def graph_get(
    sim: SimulatedWorkplace, path: str, token: str | None, **params: str
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        f"{sim.url}{path}", params=params, headers=headers, allow_redirects=False, timeout=5
    )


def signed_get(
    sim: SimulatedWorkplace, clock: FakeClock, path: str, token: str, **params: str
) -> requests.Response:
    return graph_get(sim, path, token, **params, **proof(token, int(clock.now) - 5))


def graph_error(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["fbtrace_id"], str) and error["fbtrace_id"]
    assert isinstance(error["message"], str) and error["message"]
    return error


# -- install dialog -------------------------------------------------------------------------


def test_dialog_redirects_with_a_one_time_code_and_the_state(sim: SimulatedWorkplace) -> None:
    params = callback_params(dialog(sim, suggested_page_name="Vigil Bot"))

    assert set(params) == {"code", "state"}
    assert params["state"] == "nonce-1"
    issued = sim.install_codes[params["code"]]
    assert issued.redirect_uri == REDIRECT_URI
    assert issued.issued_at == 1_700_000_000.0
    assert issued.page_name == "Vigil Bot"
    assert not issued.used


def test_dialog_echoes_no_state_when_none_was_sent(sim: SimulatedWorkplace) -> None:
    assert set(callback_params(dialog(sim, state=None))) == {"code"}


def test_dialog_keeps_the_redirect_uris_own_query(sim: SimulatedWorkplace) -> None:
    response = dialog(sim, redirect_uri=REDIRECT_URI + "?tenant=a")
    location = urlsplit(response.headers["Location"])
    assert parse_qs(location.query)["tenant"] == ["a"]
    assert "code" in parse_qs(location.query)


@pytest.mark.parametrize(
    "params",
    [
        {"app_id": "999"},
        {"app_id": None},
        {"redirect_uri": None},
        {"redirect_uri": "/relative/callback"},
        {"permissions[]": "impersonate"},
    ],
)
def test_dialog_rejects_an_invalid_request_with_an_html_400(
    sim: SimulatedWorkplace, params: dict[str, Any]
) -> None:
    response = dialog(sim, **params)

    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Location" not in response.headers
    assert not sim.install_codes


def test_dialog_rejects_an_unregistered_redirect_uri(sim: SimulatedWorkplace) -> None:
    sim.redirect_uris = {REDIRECT_URI}

    assert dialog(sim, redirect_uri="https://evil.example/callback").status_code == 400
    assert "code" in callback_params(dialog(sim))


def test_denied_dialog_redirects_with_an_error_and_no_code(sim: SimulatedWorkplace) -> None:
    sim.auto_approve = False

    params = callback_params(dialog(sim))

    assert params["error"] == "access_denied"
    assert params["error_reason"] == "user_denied"
    assert params["error_description"]
    assert params["state"] == "nonce-1"
    assert "code" not in params
    assert not sim.install_codes


def test_dialog_grants_the_requested_permission_subset(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    code = callback_params(dialog(sim, **{"permissions[]": ["manage_accounts", "read_user_email"]}))
    token = exchange(sim, code["code"]).json()["access_token"]

    body = signed_get(sim, clock, "/community", token, fields="install").json()

    assert body["install"]["permissions"] == ["MANAGE_ACCOUNTS", "READ_USER_EMAIL"]


# -- code exchange --------------------------------------------------------------------------


def test_code_exchanges_once_then_fails_with_code_100(sim: SimulatedWorkplace) -> None:
    code = callback_params(dialog(sim))["code"]

    first = exchange(sim, code)
    second = exchange(sim, code)

    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"access_token", "token_type"}
    assert body["token_type"] == "bearer"
    assert body["access_token"].startswith("DQVJ")
    [made] = sim.installs
    assert made.token == body["access_token"]
    assert made.installed_at == 1_700_000_000.0
    assert sim.issued_tokens[made.token].install_id == made.id
    error = graph_error(second)
    assert (error["type"], error["code"], error["error_subcode"]) == ("OAuthException", 100, 36009)
    assert len(sim.installs) == 1


def test_code_older_than_300_seconds_is_rejected(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    code = callback_params(dialog(sim))["code"]
    clock.now += 301

    error = graph_error(exchange(sim, code))

    assert (error["code"], error["error_subcode"]) == (100, 36007)
    assert not sim.installs


def test_code_at_299_seconds_still_exchanges(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    code = callback_params(dialog(sim))["code"]
    clock.now += 299

    assert exchange(sim, code).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "code", "subcode"),
    [
        ({"client_secret": "wrong-secret"}, 1, None),
        ({"client_secret": ""}, 1, None),
        ({"client_id": "999"}, 101, None),
        ({"redirect_uri": REDIRECT_URI + "/other"}, 100, 36008),
        ({"redirect_uri": ""}, 191, None),
        ({"code": "AQ-not-a-code"}, 100, None),
    ],
)
def test_bad_exchanges_fail_with_a_graph_error_and_leave_the_code_usable(
    sim: SimulatedWorkplace, overrides: dict[str, str], code: int, subcode: int | None
) -> None:
    real_code = callback_params(dialog(sim))["code"]

    error = graph_error(exchange(sim, real_code, **overrides))

    assert error["type"] == "OAuthException"
    assert error["code"] == code
    assert error.get("error_subcode") == subcode
    assert not sim.installs
    assert exchange(sim, real_code).status_code == 200


def test_exchange_accepts_post_form_and_redacts_the_secret_in_the_record(
    sim: SimulatedWorkplace,
) -> None:
    code = callback_params(dialog(sim))["code"]
    form = {"client_id": APP_ID, "client_secret": APP_SECRET, "redirect_uri": REDIRECT_URI}

    response = requests.post(
        f"{sim.url}/oauth/access_token", data={**form, "code": code}, timeout=5
    )

    assert response.status_code == 200
    [record] = sim.requests_to("/oauth/access_token")
    assert APP_SECRET.encode() not in record.body
    assert record.query["client_secret"] == "<redacted>"


def test_an_exchange_with_the_secret_in_the_query_string_is_refused(
    sim: SimulatedWorkplace,
) -> None:
    code = callback_params(dialog(sim))["code"]
    params = {"client_id": APP_ID, "client_secret": APP_SECRET, "redirect_uri": REDIRECT_URI}

    response = requests.get(
        f"{sim.url}/oauth/access_token", params={**params, "code": code}, timeout=5
    )

    assert graph_error(response)["code"] == 100
    assert "client_secret in the query string" in graph_error(response)["message"]
    assert not sim.installs
    assert exchange(sim, code).status_code == 200  # the code was not spent


def test_a_slow_endpoint_is_recorded_on_arrival_and_answers_after_its_delay(
    sim: SimulatedWorkplace,
) -> None:
    code = callback_params(dialog(sim))["code"]
    sim.slow("/oauth/access_token", seconds=30)

    with pytest.raises(requests.Timeout):
        requests.post(
            f"{sim.url}/oauth/access_token",
            data={"client_id": APP_ID, "client_secret": APP_SECRET},
            timeout=0.3,
        )

    [record] = sim.requests_to("/oauth/access_token")
    assert record.status == 0  # still waiting: not answered yet
    assert exchange(sim, code).status_code == 200  # one slow call only


def test_workplace_initiated_code_exchanges_like_a_dialog_code(sim: SimulatedWorkplace) -> None:
    code = sim.issue_install_code(REDIRECT_URI)

    assert exchange(sim, code).status_code == 200


# -- Graph reads: auth and appsecret_proof --------------------------------------------------


def test_community_without_proof_fails_with_code_100(sim: SimulatedWorkplace) -> None:
    token = install(sim)

    error = graph_error(graph_get(sim, "/community", token, fields="id,name,install"))

    assert error["code"] == 100
    assert "appsecret_proof" in error["message"]


def test_community_with_a_proof_returns_the_tenant_and_install(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    token = install(sim)

    response = signed_get(sim, clock, "/v18.0/community", token, fields="id,name,install")

    assert response.status_code == 200, response.text
    [made] = sim.installs
    assert response.json() == {
        "id": "504942443827307",
        "name": "Contoso",
        "install": {
            "id": made.id,
            "permissions": list(sim.app_permissions),
            "install_type": "COMMUNITY",
        },
    }


def test_company_is_the_root_community_and_fields_are_honoured(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    token = install(sim)

    assert signed_get(sim, clock, "/company", token, fields="name").json() == {
        "id": "504942443827307",
        "name": "Contoso",
    }
    assert signed_get(sim, clock, "/community", token, fields="install{id}").json() == {
        "id": "504942443827307",
        "install": {"id": sim.installs[0].id},
    }


def test_access_token_may_come_as_a_query_parameter(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    token = install(sim)

    response = graph_get(
        sim, "/me", None, access_token=token, fields="id,name", **proof(token, int(clock.now))
    )

    assert response.status_code == 200
    assert response.json() == {"id": sim.installs[0].page_id, "name": "Vigil"}
    [record] = sim.requests_to("/me")
    assert record.query["access_token"] == "<redacted>"


@pytest.mark.parametrize(
    "bad_proof",
    [
        pytest.param(lambda token, now: proof(token, now, secret="other-secret"), id="wrong-key"),
        pytest.param(lambda token, now: proof(token, now - 301), id="stale"),
        pytest.param(lambda token, now: proof(token, now + 60), id="future"),
        pytest.param(lambda token, now: {"appsecret_proof": proof(token, now)["appsecret_proof"]},
                     id="no-time"),
        pytest.param(lambda token, now: {**proof(token, now), "appsecret_time": str(now - 1)},
                     id="time-mismatch"),
    ],
)  # fmt: skip
def test_invalid_proofs_fail_with_code_100(
    sim: SimulatedWorkplace, clock: FakeClock, bad_proof: Any
) -> None:
    token = install(sim)

    response = graph_get(sim, "/community", token, **bad_proof(token, int(clock.now)))

    assert graph_error(response)["code"] == 100


def test_proofs_expire_after_300_seconds(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    token = install(sim)
    stamped = proof(token, int(clock.now))

    clock.now += 300
    assert graph_get(sim, "/community", token, **stamped).status_code == 200
    clock.now += 1
    assert graph_error(graph_get(sim, "/community", token, **stamped))["code"] == 100


def test_unknown_token_gets_190(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    error = graph_error(signed_get(sim, clock, "/community", "DQVJnot-a-token"))

    assert (error["type"], error["code"]) == ("OAuthException", 190)
    assert error["message"] == "Invalid OAuth access token."


def test_missing_token_gets_104(sim: SimulatedWorkplace) -> None:
    assert graph_error(graph_get(sim, "/community", None))["code"] == 104


def test_uninstalled_token_gets_190_with_subcode_458(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    token = install(sim)
    sim.uninstall()

    error = graph_error(signed_get(sim, clock, "/community", token))

    assert (error["code"], error["error_subcode"]) == (190, 458)


def test_custom_integration_token_needs_no_proof_unless_toggled(sim: SimulatedWorkplace) -> None:
    open_token = sim.add_custom_integration()
    strict_token = sim.add_custom_integration(require_proof=True)

    body = graph_get(sim, "/community", open_token, fields="id,name,install").json()

    assert body == {"id": "504942443827307", "name": "Contoso"}
    assert graph_error(graph_get(sim, "/community", strict_token))["code"] == 100


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/nonexistent", {}),
        ("/community/nonexistent", {}),
        ("/v3.2/a/b/c", {}),
        ("/community", {"fields": "id,secret_field"}),
        ("/community/members", {"fields": "id,bogus"}),
        ("/community/members", {"fields": "id,name{"}),
    ],
)
def test_unknown_paths_and_fields_get_a_graph_error(
    sim: SimulatedWorkplace, clock: FakeClock, path: str, params: dict[str, str]
) -> None:
    token = install(sim)

    error = graph_error(signed_get(sim, clock, path, token, **params))

    assert error["code"] in (100, 2500)


def test_writes_are_unsupported(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    token = install(sim)

    response = requests.post(
        f"{sim.url}/community",
        params=proof(token, int(clock.now)),
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )

    error = graph_error(response)
    assert (error["code"], error["error_subcode"]) == (100, 33)


def test_requests_are_recorded_with_the_authorization_redacted(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    token = install(sim)
    sim.clear_requests()

    signed_get(sim, clock, "/v3.2/community/members", token, fields="id,email", limit="2")

    [record] = sim.requests
    assert record.method == "GET"
    assert record.path == "/v3.2/community/members"
    assert record.endpoint == "/community/members"
    assert record.version == "v3.2"
    assert record.query["fields"] == "id,email"
    assert record.query["limit"] == "2"
    assert "appsecret_proof" in record.query
    assert record.headers["authorization"] == "<redacted>"
    assert record.status == 200
    assert token not in repr(record)


# -- directory edges and paging -------------------------------------------------------------


def collect(
    sim: SimulatedWorkplace, clock: FakeClock, token: str, edge: str, **params: str
) -> tuple[list[dict[str, Any]], int]:
    """Follow `paging.next` to the end; returns the rows and the number of pages. `edge` is a
    community edge ("members") or a path ("/{group-id}/members")."""
    path = f"/v18.0{edge}" if edge.startswith("/") else f"/v18.0/community/{edge}"
    response = signed_get(sim, clock, path, token, **params)
    rows: list[dict[str, Any]] = []
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        rows.extend(body["data"])
        next_url = body.get("paging", {}).get("next")
        if next_url is None:
            return rows, pages
        assert next_url.startswith(f"{sim.url}{path}?")
        assert "appsecret_proof" not in next_url
        response = requests.get(
            next_url,
            params=proof(token, int(clock.now)),
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )


def test_paging_returns_every_member_once_and_ends_without_next(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    for i in range(20):
        sim.add_member(f"Extra Person{i}", f"extra{i}@contoso.com")
    token = install(sim)
    active = [m for m in sim.members if m.active]

    rows, pages = collect(sim, clock, token, "members", fields="id,name,email", limit="4")

    assert sorted(r["id"] for r in rows) == sorted(m.id for m in active)
    assert len(rows) == len({r["id"] for r in rows})
    assert pages == -(-len(active) // 4)
    assert all(set(r) == {"id", "name", "email"} for r in rows)


def test_default_page_is_25_with_cursors(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    for i in range(30):
        sim.add_member(f"Extra Person{i}", f"extra{i}@contoso.com")
    token = install(sim)

    body = signed_get(sim, clock, "/community/members", token).json()

    assert len(body["data"]) == 25
    assert set(body["data"][0]) == {"id", "name"}
    assert set(body["paging"]["cursors"]) == {"before", "after"}
    assert "next" in body["paging"]
    after = body["paging"]["cursors"]["after"]
    rest = signed_get(sim, clock, "/community/members", token, after=after).json()
    assert "next" not in rest["paging"]
    seen = [r["id"] for r in body["data"] + rest["data"]]
    assert sorted(seen) == sorted(m.id for m in sim.members if m.active)


def test_former_members_and_admins(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    token = install(sim)
    leaver = sim.member("adele.vance@contoso.com")
    leaver.active = False

    former, _ = collect(sim, clock, token, "former_members", fields="id,email,active")
    admins, _ = collect(sim, clock, token, "admins", fields="id,email")

    assert {r["email"] for r in former} == {"pradeep.gupta@contoso.com", "adele.vance@contoso.com"}
    assert all(r["active"] is False for r in former)
    assert {r["id"] for r in admins} == {m.id for m in sim.members if m.admin and m.active}


def test_admins_need_manage_accounts(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    code = callback_params(dialog(sim, **{"permissions[]": "read_user_email"}))["code"]
    token = exchange(sim, code).json()["access_token"]

    assert graph_error(signed_get(sim, clock, "/community/admins", token))["code"] == 10


def test_groups_and_their_members_are_paged_edges(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    token = install(sim)
    extra = sim.add_group("Night Shift", ["adele.vance@contoso.com", "alex.wilber@contoso.com"])
    sim.member("alex.wilber@contoso.com").active = False  # deactivated: off every group's list

    groups, pages = collect(sim, clock, token, "groups", fields="id,name", limit="2")
    everyone = sim.group("all contoso")
    members, member_pages = collect(
        sim, clock, token, f"/{everyone.id}/members", fields="id,email", limit="3"
    )
    night, _ = collect(sim, clock, token, f"/{extra.id}/members", fields="id,email")

    assert [(g["id"], g["name"]) for g in groups] == [(g.id, g.name) for g in sim.groups]
    assert pages == 2 and all(set(g) == {"id", "name"} for g in groups)
    active = [m for m in sim.members if m.active]
    assert sorted(r["id"] for r in members) == sorted(
        m.id for m in active if m.id in everyone.member_ids
    )
    assert member_pages == 2 and all(set(r) == {"id", "email"} for r in members)
    assert night == [
        {"id": sim.member("adele.vance@contoso.com").id, "email": "adele.vance@contoso.com"}
    ]
    group = signed_get(sim, clock, f"/{extra.id}", token, fields="id,name,privacy").json()
    assert group == {"id": extra.id, "name": "Night Shift", "privacy": "CLOSED"}


def test_groups_need_a_group_permission_and_a_deleted_group_is_gone(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    code = callback_params(dialog(sim, **{"permissions[]": "read_user_email"}))["code"]
    token = exchange(sim, code).json()["access_token"]
    assert graph_error(signed_get(sim, clock, "/community/groups", token))["code"] == 10
    group = sim.group("IT Admins")
    path = f"/{group.id}/members"
    assert graph_error(signed_get(sim, clock, path, token))["code"] == 10

    token = install(sim)
    sim.groups.remove(group)
    error = graph_error(signed_get(sim, clock, path, token))
    assert (error["code"], error["error_subcode"]) == (100, 33)


def test_bad_cursor_and_limit_are_rejected(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    token = install(sim)

    assert graph_error(signed_get(sim, clock, "/community/members", token, after="zzz"))
    assert graph_error(signed_get(sim, clock, "/community/members", token, limit="0"))


# -- webhooks -------------------------------------------------------------------------------


@dataclass
class Captured:
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[tuple[str, Captured]]:
    """A tiny webhook endpoint (on the simulators' serving layer) that records each POST."""
    captured = Captured()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        captured.posts.append(({k.lower(): v for k, v in request.headers}, request.get_data()))
        return Response(status=200)(environ, start_response)

    server = Server(app, name="webhook-receiver")
    yield f"http://127.0.0.1:{server.port}/api/workplace/webhook", captured
    server.stop()


def login_envelope(sim: SimulatedWorkplace) -> dict[str, Any]:
    actor = sim.member("megan.bowen@contoso.com")
    when = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    return sim.security_envelope(
        [sim.change("LOGIN_FAILED", actor=actor, ip="203.0.113.7", ip_country="PL", timestamp=when)]
    )


def hub_signature(algorithm: str, body: bytes) -> str:
    return f"{algorithm}=" + hmac.new(APP_SECRET.encode(), body, algorithm).hexdigest()


def test_deliver_signs_the_raw_body_with_sha256_and_sha1(
    sim: SimulatedWorkplace, receiver: tuple[str, Captured]
) -> None:
    url, captured = receiver
    envelope = login_envelope(sim)

    response = sim.deliver(url, envelope)

    assert response.status_code == 200
    [(headers, body)] = captured.posts
    assert json.loads(body) == envelope
    assert hmac.compare_digest(headers["x-hub-signature-256"], hub_signature("sha256", body))
    assert hmac.compare_digest(headers["x-hub-signature"], hub_signature("sha1", body))
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "facebookexternalua"
    assert sim.deliveries[0].body == body


def test_deliver_escapes_like_meta_so_reserialising_breaks_the_signature(
    sim: SimulatedWorkplace, receiver: tuple[str, Captured]
) -> None:
    url, captured = receiver
    envelope = login_envelope(sim)
    envelope["entry"][0]["changes"][0]["value"]["actor_email"] = "zoë/x@contoso.com"

    sim.deliver(url, envelope)

    [(headers, body)] = captured.posts
    assert b"zo\\u00eb\\/x@contoso.com" in body
    assert body.startswith(b'{"object":"workplace_security","entry":[{"id":"504942447160640"')
    assert json.loads(body) == envelope
    reserialised = json.dumps(json.loads(body)).encode()
    assert headers["x-hub-signature-256"] != hub_signature("sha256", reserialised)


@pytest.mark.parametrize(
    ("mode", "sha256", "sha1"),
    [("sha256", True, False), ("sha1", False, True), ("none", False, False)],
)
def test_deliver_sends_only_the_requested_signatures(
    sim: SimulatedWorkplace,
    receiver: tuple[str, Captured],
    mode: Any,
    sha256: bool,
    sha1: bool,
) -> None:
    url, captured = receiver

    sim.deliver(url, login_envelope(sim), signature=mode)

    [(headers, body)] = captured.posts
    assert ("x-hub-signature-256" in headers) is sha256
    assert ("x-hub-signature" in headers) is sha1
    if sha256:
        assert headers["x-hub-signature-256"] == hub_signature("sha256", body)
    if sha1:
        assert headers["x-hub-signature"] == hub_signature("sha1", body)


def test_bad_signature_does_not_verify(
    sim: SimulatedWorkplace, receiver: tuple[str, Captured]
) -> None:
    url, captured = receiver

    sim.deliver(url, login_envelope(sim), signature="bad")

    [(headers, body)] = captured.posts
    assert headers["x-hub-signature-256"].startswith("sha256=")
    assert headers["x-hub-signature-256"] != hub_signature("sha256", body)
    assert headers.get("x-hub-signature") != hub_signature("sha1", body)


def test_deliver_sends_raw_bytes_unchanged(
    sim: SimulatedWorkplace, receiver: tuple[str, Captured]
) -> None:
    url, captured = receiver

    sim.deliver(url, b'{"object": "workplace_security", "entry": [')

    [(headers, body)] = captured.posts
    assert body == b'{"object": "workplace_security", "entry": ['
    assert headers["x-hub-signature-256"] == hub_signature("sha256", body)


# -- event payloads -------------------------------------------------------------------------


def test_event_value_has_exactly_the_attested_fields(sim: SimulatedWorkplace) -> None:
    actor = sim.member("megan.bowen@contoso.com")
    target = sim.member("adele.vance@contoso.com")

    value = sim.event_value(
        "FORCED_PASSWORD_RESET",
        actor=actor,
        target=target,
        ip="198.51.100.20",
        ip_country="DE",
        timestamp=datetime(2024, 5, 1, 8, 30, 5, tzinfo=UTC),
    )

    assert set(value) == ATTESTED_VALUE_FIELDS
    assert value["actor_id"] == actor.id
    assert value["actor_email"] == "megan.bowen@contoso.com"
    assert (value["target_id"], value["target_email"]) == (target.id, target.email)
    assert value["timestamp"] == "2024-05-01T08:30:05+0000"
    assert (value["actor_community_id"], value["target_community_id"]) == (
        "504942443827307",
        "504942443827307",
    )
    assert value["actor_scim_company_id"] == value["target_company_id"] == "504942447160640"
    assert value["useragent"] == FIREFOX_USERAGENT
    assert (value["browser_name"], value["browser_os"]) == ("Firefox", "Mac OS X 10.15")


def test_event_value_defaults_target_to_actor_and_adds_extras(sim: SimulatedWorkplace) -> None:
    actor = sim.member("megan.bowen@contoso.com")

    field_name, value = sim.change(
        "LOGIN",
        actor=actor,
        ip="203.0.113.7",
        ip_country="PL",
        timestamp=datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        is_interactive=False,
        impersonator_id="100064094363103",
    )

    assert field_name == "login"
    assert set(value) == ATTESTED_VALUE_FIELDS | {"is_interactive", "impersonator_id"}
    assert value["target_id"] == value["actor_id"] == actor.id


def test_event_value_rejects_a_naive_timestamp(sim: SimulatedWorkplace) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sim.event_value(
            "LOGIN",
            actor=sim.members[0],
            ip="203.0.113.7",
            ip_country="PL",
            timestamp=datetime(2024, 5, 1),  # naive on purpose
        )


def test_security_envelope_is_keyed_by_the_company(sim: SimulatedWorkplace) -> None:
    envelope = sim.security_envelope([("integrations", {"event": "CUSTOM_INTEGRATION_EDIT"})])

    assert envelope == {
        "object": "workplace_security",
        "entry": [
            {
                "id": "504942447160640",
                "time": 1_700_000_000,
                "changes": [
                    {"field": "integrations", "value": {"event": "CUSTOM_INTEGRATION_EDIT"}}
                ],
            }
        ],
    }
    assert sim.security_envelope([], entry_time=5)["entry"][0]["time"] == 5


def test_event_fields_follow_the_catalogue() -> None:
    assert EVENT_FIELDS["CUSTOM_INTEGRATION_EDIT"] == "integrations"
    assert EVENT_FIELDS["LOGIN_FAILED"] == "login"
    assert EVENT_FIELDS["TWO_FACTOR_CODE_FAILED"] == "two_factor"
    assert EVENT_FIELDS["ACCOUNT_PROMOTED_TO_ADMIN"] == "admin"
    assert set(EVENT_FIELDS.values()) == {
        "login",
        "password",
        "two_factor",
        "account",
        "admin",
        "domain",
        "integrations",
        "files",
    }
    assert len(EVENT_FIELDS) == 30


def test_change_needs_a_field_for_unknown_events(sim: SimulatedWorkplace) -> None:
    kw: dict[str, Any] = {
        "actor": sim.members[0],
        "ip": "203.0.113.7",
        "ip_country": "PL",
        "timestamp": datetime(2024, 5, 1, tzinfo=UTC),
    }
    with pytest.raises(KeyError):
        sim.change("SOMETHING_NEW", **kw)
    assert sim.change("SOMETHING_NEW", field="account", **kw)[0] == "account"


# -- uninstall ------------------------------------------------------------------------------


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("encoding", ["hex", "raw"])
def test_uninstall_signed_request_verifies(sim: SimulatedWorkplace, encoding: Any) -> None:
    signed = sim.uninstall_signed_request(encoding=encoding)

    sig_b64, payload_b64 = signed.split(".", 1)
    assert "=" not in signed
    mac = hmac.new(APP_SECRET.encode(), payload_b64.encode(), hashlib.sha256)
    expected = mac.hexdigest().encode() if encoding == "hex" else mac.digest()
    assert hmac.compare_digest(b64url_decode(sig_b64), expected)
    assert json.loads(b64url_decode(payload_b64)) == {
        "algorithm": "HMAC-SHA256",
        "community_id": "504942443827307",
        "issued_at": 1_700_000_000,
    }


def test_deliver_uninstall_posts_the_signed_request_form(
    sim: SimulatedWorkplace, receiver: tuple[str, Captured]
) -> None:
    url, captured = receiver

    sim.deliver_uninstall(url)

    [(headers, body)] = captured.posts
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(body.decode())["signed_request"] == [sim.uninstall_signed_request()]


# -- lifecycle ------------------------------------------------------------------------------


def test_url_needs_a_running_server_and_stop_frees_it() -> None:
    sim = SimulatedWorkplace(app_id=APP_ID, app_secret=APP_SECRET)
    with pytest.raises(RuntimeError):
        _ = sim.url
    sim.start()
    url = sim.url
    assert url.startswith("http://127.0.0.1:")
    assert sim.dialog_url == url + "/dialog/work/app_install/"
    sim.stop()
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/me", timeout=2)


def test_account_actions_log_out_and_deactivate_and_the_state_reads_back(
    sim: SimulatedWorkplace,
) -> None:
    token = sim.add_custom_integration()
    person = sim.add_member("Eve Example", "eve@contoso.com")
    auth = {"Authorization": f"Bearer {token}"}
    seen: list[int] = []
    sim.before_answer("POST", "/logout$", lambda r: seen.append(sim.member(person.id).logouts))

    logout = requests.post(f"{sim.url}/{person.id}/logout", headers=auth, timeout=5)
    assert logout.json() == {"success": True} and sim.member(person.id).logouts == 1
    assert seen == [1]  # the hook ran after the logout was carried out
    off = requests.post(
        f"{sim.url}/{person.id}", params={"active": "false"}, headers=auth, timeout=5
    )
    assert off.json() == {"success": True}
    assert graph_get(sim, f"/{person.id}", token, fields="id,active").json() == {
        "id": person.id,
        "active": False,
    }
    unknown = requests.post(f"{sim.url}/{person.id}/sessions", headers=auth, timeout=5)
    assert graph_error(unknown)["code"] == 100
