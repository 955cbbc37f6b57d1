"""The simulated Workplace tenant against its contract (workplace-api.md), over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from local.http import RecordedRequest, Request, Response, Simulator
from local.sim_workplace import EVENT_FIELDS, FIREFOX_USERAGENT, SimulatedWorkplace

APP_ID = "1234567890"
APP_SECRET = "wp-app-secret-for-tests"
REDIRECT_URI = "http://127.0.0.1:7071/api/workplace/callback"
NOW = 1_700_000_000
COMMUNITY, COMPANY = "504942443827307", "504942447160640"
ATTESTED_VALUE_FIELDS = set(
    """actor_community_id actor_scim_company_id actor_id actor_email target_id target_email ip
    timestamp event browser_name browser_os ip_country useragent target_community_id
    target_company_id""".split()
)

Proof = Callable[[str, int], dict[str, str]]


class FakeClock:
    def __init__(self) -> None:
        self.now = float(NOW)

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
    query = {"app_id": APP_ID, "redirect_uri": REDIRECT_URI, "state": "nonce-1", **params}
    query = {k: v for k, v in query.items() if v is not None}
    return requests.get(sim.dialog_url, params=query, allow_redirects=False, timeout=5)


def callback_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(sim: SimulatedWorkplace, install_code: str, **overrides: str) -> requests.Response:
    form = {"client_id": APP_ID, "client_secret": APP_SECRET, "redirect_uri": REDIRECT_URI}
    form |= {"code": install_code, **overrides}
    return requests.post(f"{sim.url}/v3.2/oauth/access_token", data=form, timeout=5)


def install(sim: SimulatedWorkplace) -> str:
    code = callback_params(dialog(sim))["code"]
    response = exchange(sim, code)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def proof(token: str, when: int, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"{token}|{when}".encode(), hashlib.sha256).hexdigest()
    return {"appsecret_proof": digest, "appsecret_time": str(when)}


def fresh(token: str, now: int) -> dict[str, str]:
    return proof(token, now - 5)


def graph_get(
    sim: SimulatedWorkplace, path: str, token: str | None, **params: str
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{sim.url}{path}", params=params, headers=headers, timeout=5)


def signed_get(
    sim: SimulatedWorkplace, clock: FakeClock, path: str, token: str, **params: str
) -> requests.Response:
    return graph_get(sim, path, token, **params, **fresh(token, int(clock.now)))


def graph_error(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["fbtrace_id"], str) and error["fbtrace_id"]
    assert isinstance(error["message"], str) and error["message"]
    return error


# -- install dialog -------------------------------------------------------------------------


def test_dialog_redirects_with_a_one_time_code_and_the_state(sim: SimulatedWorkplace) -> None:
    params = callback_params(dialog(sim))

    assert set(params) == {"code", "state"} and params["state"] == "nonce-1"
    issued = sim.install_codes[params["code"]]
    assert (issued.redirect_uri, issued.issued_at, issued.used) == (REDIRECT_URI, NOW, False)
    assert set(callback_params(dialog(sim, state=None))) == {"code"}  # no state, none echoed
    kept = urlsplit(dialog(sim, redirect_uri=REDIRECT_URI + "?tenant=a").headers["Location"])
    assert parse_qs(kept.query)["tenant"] == ["a"] and "code" in parse_qs(kept.query)


@pytest.mark.parametrize(
    "params",
    [
        {"app_id": "999"},
        {"app_id": None},
        {"redirect_uri": None},
        {"redirect_uri": "/relative/callback"},
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


# -- code exchange --------------------------------------------------------------------------


def test_code_exchanges_once_and_expires(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    code = callback_params(dialog(sim))["code"]

    first, second = exchange(sim, code), exchange(sim, code)

    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"access_token", "token_type"} and body["token_type"] == "bearer"
    assert body["access_token"].startswith("DQVJ")
    [made] = sim.installs
    assert made.token == body["access_token"] and sim.issued_tokens[made.token] is made
    error = graph_error(second)
    assert (error["type"], error["code"], error["error_subcode"]) == ("OAuthException", 100, 36009)
    assert len(sim.installs) == 1
    # A Workplace-initiated code exchanges like the dialog's, until it is 300 seconds old.
    fresh_code, stale_code = (sim.issue_install_code(REDIRECT_URI) for _ in range(2))
    clock.now += 299
    assert exchange(sim, fresh_code).status_code == 200
    clock.now += 2
    error = graph_error(exchange(sim, stale_code))
    assert (error["code"], error["error_subcode"], len(sim.installs)) == (100, 36007, 2)


@pytest.mark.parametrize(
    ("overrides", "code", "subcode"),
    [
        ({"client_secret": "wrong-secret"}, 1, None),
        ({"client_secret": ""}, 1, None),
        ({"client_id": "999"}, 101, None),
        ({"client_id": ""}, 101, None),
        ({"redirect_uri": REDIRECT_URI + "/other"}, 100, 36008),
        ({"redirect_uri": ""}, 191, None),
        ({"code": ""}, 1, None),
        ({"code": "AQ-not-a-code"}, 100, None),
    ],
)
def test_bad_exchanges_fail_with_a_graph_error_and_leave_the_code_usable(
    sim: SimulatedWorkplace, overrides: dict[str, str], code: int, subcode: int | None
) -> None:
    real_code = callback_params(dialog(sim))["code"]

    error = graph_error(exchange(sim, real_code, **overrides))

    assert (error["type"], error["code"], error.get("error_subcode")) == (
        "OAuthException", code, subcode
    )  # fmt: skip
    assert not sim.installs
    assert exchange(sim, real_code).status_code == 200


def test_secrets_in_the_query_string_are_refused_and_redacted_in_the_record(
    sim: SimulatedWorkplace,
) -> None:
    code = callback_params(dialog(sim))["code"]
    form = {"client_id": APP_ID, "client_secret": APP_SECRET, "redirect_uri": REDIRECT_URI}
    token = sim.add_custom_integration()

    secret_in_query = requests.get(
        f"{sim.url}/oauth/access_token", params={**form, "code": code}, timeout=5
    )
    token_in_query = graph_get(sim, "/community", None, access_token=token)

    error = graph_error(secret_in_query)
    assert error["code"] == 100 and "client_secret in the query string" in error["message"]
    assert not sim.installs
    assert exchange(sim, code).status_code == 200  # the code was not spent
    assert sim.requests_to("/oauth/access_token")[0].query["client_secret"] == "<redacted>"
    assert "access_token in the query string" in graph_error(token_in_query)["message"]
    assert sim.requests_to("/community")[0].query["access_token"] == "<redacted>"


# -- Graph reads: auth, appsecret_proof, nodes and fields -----------------------------------


def test_nodes_answer_the_requested_fields(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    token = install(sim)
    [made] = sim.installs
    install_node = {"id": made.id, "permissions": list(sim.app_permissions)}

    def got(path: str, fields: str) -> Any:
        response = signed_get(sim, clock, path, token, fields=fields)
        assert response.status_code == 200, response.text
        assert response.headers["facebook-api-version"] and response.headers["x-fb-trace-id"]
        return response.json()

    assert got("/v18.0/community", "id,name,install") == {
        "id": COMMUNITY,
        "name": "Contoso",
        "install": {**install_node, "install_type": "COMMUNITY"},
    }
    assert got("/company", "name") == {"id": COMMUNITY, "name": "Contoso"}
    assert got(f"/{COMMUNITY}", "id") == {"id": COMMUNITY}
    megan = sim.member("megan.bowen@contoso.com")
    assert got(f"/{megan.id}", "email,first_name,account_invite_time,manager") == {
        "id": megan.id,
        "email": "megan.bowen@contoso.com",
        "first_name": "Megan",
        "account_invite_time": "2021-01-01T00:00:00+0000",
    }


def test_proofs_expire_after_300_seconds(sim: SimulatedWorkplace, clock: FakeClock) -> None:
    token = install(sim)
    stamped = proof(token, int(clock.now))

    clock.now += 300
    assert graph_get(sim, "/community", token, **stamped).status_code == 200
    clock.now += 1
    assert graph_error(graph_get(sim, "/community", token, **stamped))["code"] == 100


def email_only_install(sim: SimulatedWorkplace) -> str:
    sim.app_permissions = ("READ_USER_EMAIL",)
    return install(sim)


def token_for(sim: SimulatedWorkplace, kind: str) -> str | None:
    """An access token of this kind: an install's (all or only the e-mail permission), an
    uninstalled install's, a custom integration's that needs a proof, none, or a literal."""
    if kind == "uninstalled":
        token = install(sim)
        sim.uninstall()
        return token
    makers: dict[str, Callable[[], str | None]] = {
        "install": lambda: install(sim),
        "email-only": lambda: email_only_install(sim),
        "strict-ci": lambda: sim.add_custom_integration(require_proof=True),
        "none": lambda: None,
    }
    return makers[kind]() if kind in makers else kind


@dataclass(frozen=True)
class GraphCase:
    """A Graph request that fails: path, expected code and subcode, and how it is sent."""

    path: str
    code: int
    subcode: int | None = None
    token: str = "install"  # a kind of token (see token_for)
    params: dict[str, str] = field(default_factory=dict)
    signed: Proof = fresh
    method: str = "GET"
    says: str = ""  # part of the message
    before: Callable[[SimulatedWorkplace], None] = lambda sim: None


def unsigned(token: str, now: int) -> dict[str, str]:
    return {}


IT_ADMINS = "1564880947340002"
GRAPH_ERRORS = {
    "no-proof": GraphCase("/community", 100, signed=unsigned, says="appsecret_proof"),
    "wrong-key": GraphCase("/community", 100, signed=lambda t, n: proof(t, n, "other-secret")),
    "stale-proof": GraphCase("/community", 100, signed=lambda t, n: proof(t, n - 301)),
    "future-proof": GraphCase("/community", 100, signed=lambda t, n: proof(t, n + 60)),
    "proof-without-time": GraphCase(
        "/community", 100, signed=lambda t, n: {"appsecret_proof": proof(t, n)["appsecret_proof"]}
    ),
    "time-mismatch": GraphCase(
        "/community", 100, signed=lambda t, n: {**proof(t, n), "appsecret_time": str(n - 1)}
    ),
    "unknown-token": GraphCase("/community", 190, token="DQVJnot-a", says="Invalid OAuth access"),
    "missing-token": GraphCase("/community", 104, token="none"),
    "uninstalled": GraphCase("/community", 190, 458, token="uninstalled"),
    "strict-ci-without-proof": GraphCase("/community", 100, token="strict-ci", signed=unsigned),
    "unknown-node": GraphCase("/nonexistent", 100, 33),
    "unknown-edge": GraphCase("/community/nonexistent", 100, says="(nonexistent)"),
    "deep-path": GraphCase("/v3.2/a/b/c", 100, 33),
    "unknown-field": GraphCase("/community", 100, params={"fields": "id,secret_field"}),
    "unknown-member-field": GraphCase("/community/members", 100, params={"fields": "id,bogus"}),
    "bad-field-syntax": GraphCase("/community/members", 2500, params={"fields": "id,name{"}),
    "write": GraphCase("/community", 100, 33, method="POST"),
    "unknown-account-action": GraphCase("/100064094363101/sessions", 100, 33, method="POST"),
    "admins-need-manage-accounts": GraphCase("/community/admins", 10, token="email-only"),
    "groups-need-a-group-permission": GraphCase("/community/groups", 10, token="email-only"),
    "group-members-need-it-too": GraphCase(f"/{IT_ADMINS}/members", 10, token="email-only"),
    "deleted-group": GraphCase(
        f"/{IT_ADMINS}/members", 100, 33, before=lambda sim: sim.groups.remove(sim.group(IT_ADMINS))
    ),
    "bad-cursor": GraphCase("/community/members", 100, params={"after": "zzz"}),
    "bad-limit": GraphCase("/community/members", 100, params={"limit": "0"}),
}


@pytest.mark.parametrize("case", GRAPH_ERRORS.values(), ids=GRAPH_ERRORS.keys())
def test_graph_errors(sim: SimulatedWorkplace, clock: FakeClock, case: GraphCase) -> None:
    token = token_for(sim, case.token)
    case.before(sim)
    query = {**case.params, **(case.signed(token, int(clock.now)) if token else {})}
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    response = requests.request(
        case.method, sim.url + case.path, params=query, headers=headers, timeout=5
    )

    error = graph_error(response)
    assert (error["code"], error.get("error_subcode")) == (case.code, case.subcode)
    assert case.says in error["message"]
    if case.code in (104, 190):  # Graph's OAuth errors, with their challenge
        assert error["type"] == "OAuthException"
        assert response.headers["WWW-Authenticate"].startswith('OAuth "Facebook Platform" "inval')


def test_requests_are_recorded_with_the_authorization_redacted(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    token = install(sim)
    sim.clear_requests()

    signed_get(sim, clock, "/v3.2/community/members", token, fields="id,email", limit="2")

    [record] = sim.requests
    assert (record.method, record.path, record.endpoint, record.status) == (
        "GET", "/v3.2/community/members", "/community/members", 200
    )  # fmt: skip
    assert (record.query["fields"], record.query["limit"]) == ("id,email", "2")
    assert "appsecret_proof" in record.query
    assert record.headers["authorization"] == "<redacted>"
    assert token not in repr(record)


# -- directory edges and paging -------------------------------------------------------------


def test_an_edge_pages_forward_with_the_requested_fields(
    sim: SimulatedWorkplace, clock: FakeClock
) -> None:
    for i in range(30):
        sim.add_member(f"Extra Person{i}", f"extra{i}@contoso.com")
    token = install(sim)

    first = signed_get(sim, clock, "/v18.0/community/members", token).json()  # 25 by default
    next_url = first["paging"]["next"]
    rest = signed_get(sim, clock, next_url.removeprefix(sim.url), token).json()
    small = signed_get(sim, clock, "/community/members", token, fields="id,email", limit="4")

    assert len(first["data"]) == 25 and set(first["data"][0]) == {"id", "name"}
    assert set(first["paging"]["cursors"]) == {"before", "after"}
    assert next_url.startswith(f"{sim.url}/v18.0/community/members?")
    assert "appsecret" not in next_url  # the client adds a fresh proof
    assert [r["id"] for r in first["data"] + rest["data"]] == [
        m.id for m in sim.members if m.active
    ]
    assert "next" not in rest["paging"]
    assert [set(r) for r in small.json()["data"]] == [{"id", "email"}] * 4


# -- webhooks -------------------------------------------------------------------------------


class Receiver(Simulator):
    """A webhook endpoint on the simulators' serving layer: it records each POST, answers 200."""

    def _answer(self, request: Request, record: RecordedRequest) -> Response:
        return Response(status=200)


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    with Receiver() as running:
        yield f"http://127.0.0.1:{running.port}/api/workplace/webhook", running


def posts(receiver: Receiver) -> list[tuple[dict[str, str], bytes]]:
    return [(r.headers, r.body) for r in receiver.requests]


def login_envelope(sim: SimulatedWorkplace) -> dict[str, Any]:
    actor = sim.member("megan.bowen@contoso.com")
    when = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    return sim.security_envelope(
        [sim.change("LOGIN_FAILED", actor=actor, ip="203.0.113.7", ip_country="PL", timestamp=when)]
    )


def hub_signature(algorithm: str, body: bytes) -> str:
    return f"{algorithm}=" + hmac.new(APP_SECRET.encode(), body, algorithm).hexdigest()


@pytest.mark.parametrize("mode", ["both", "none", "bad"])
def test_deliver_signs_the_raw_body_as_asked(
    sim: SimulatedWorkplace, receiver: tuple[str, Receiver], mode: Any
) -> None:
    url, got = receiver
    envelope = login_envelope(sim)

    assert sim.deliver(url, envelope, signature=mode).status_code == 200

    [(headers, body)] = posts(got)
    assert json.loads(body) == envelope
    assert [(d.url, d.body, d.status_code) for d in sim.deliveries] == [(url, body, 200)]
    assert (headers["content-type"], headers["user-agent"]) == (
        "application/json", "facebookexternalua"
    )  # fmt: skip
    for header, algorithm in [("x-hub-signature-256", "sha256"), ("x-hub-signature", "sha1")]:
        sent = headers.get(header)
        assert (sent is None) == (mode == "none")
        if sent is not None:
            assert sent.startswith(f"{algorithm}=")
            assert hmac.compare_digest(sent, hub_signature(algorithm, body)) == (mode == "both")


def test_deliver_escapes_like_meta_so_reserialising_breaks_the_signature(
    sim: SimulatedWorkplace, receiver: tuple[str, Receiver]
) -> None:
    url, got = receiver
    envelope = login_envelope(sim)
    envelope["entry"][0]["changes"][0]["value"]["actor_email"] = "zoë/x@contoso.com"

    sim.deliver(url, envelope)
    sim.deliver(url, b'{"object": "workplace_security", "entry": [')  # raw bytes go unchanged

    [(headers, body), (raw_headers, raw)] = posts(got)
    assert b"zo\\u00eb\\/x@contoso.com" in body
    assert body.startswith(b'{"object":"workplace_security","entry":[{"id":"504942447160640"')
    assert json.loads(body) == envelope
    reserialised = json.dumps(json.loads(body)).encode()
    assert headers["x-hub-signature-256"] != hub_signature("sha256", reserialised)
    assert raw == b'{"object": "workplace_security", "entry": ['
    assert raw_headers["x-hub-signature-256"] == hub_signature("sha256", raw)


# -- event payloads -------------------------------------------------------------------------


def test_change_has_exactly_the_attested_fields_plus_extras(sim: SimulatedWorkplace) -> None:
    actor = sim.member("megan.bowen@contoso.com")
    target = sim.member("adele.vance@contoso.com")
    kw: dict[str, Any] = {"actor": actor, "ip": "198.51.100.20", "ip_country": "DE"}
    when = datetime(2024, 5, 1, 8, 30, 5, tzinfo=UTC)

    field_name, value = sim.change("FORCED_PASSWORD_RESET", **kw, target=target, timestamp=when)
    _, login = sim.change("LOGIN", **kw, timestamp=when, is_interactive=False)

    assert field_name == "password" and set(value) == ATTESTED_VALUE_FIELDS
    assert (value["actor_id"], value["actor_email"]) == (actor.id, "megan.bowen@contoso.com")
    assert (value["target_id"], value["target_email"]) == (target.id, target.email)
    assert value["timestamp"] == "2024-05-01T08:30:05+0000"
    assert value["actor_community_id"] == value["target_community_id"] == COMMUNITY
    assert value["actor_scim_company_id"] == value["target_company_id"] == COMPANY
    assert value["useragent"] == FIREFOX_USERAGENT
    assert (value["browser_name"], value["browser_os"]) == ("Firefox", "Mac OS X 10.15")
    assert set(login) == ATTESTED_VALUE_FIELDS | {"is_interactive"}
    assert login["target_id"] == actor.id  # the target defaults to the actor
    with pytest.raises(KeyError):
        sim.change("SOMETHING_NEW", **kw, timestamp=when)
    assert sim.change("SOMETHING_NEW", field="account", **kw, timestamp=when)[0] == "account"
    with pytest.raises(ValueError, match="timezone-aware"):
        sim.change("LOGIN", **kw, timestamp=datetime(2024, 5, 1))  # naive on purpose


def test_security_envelope_is_keyed_by_the_company_and_event_fields_follow_the_catalogue(
    sim: SimulatedWorkplace,
) -> None:
    change = {"field": "integrations", "value": {"event": "CUSTOM_INTEGRATION_EDIT"}}

    envelope = sim.security_envelope([("integrations", {"event": "CUSTOM_INTEGRATION_EDIT"})])

    assert envelope == {
        "object": "workplace_security",
        "entry": [{"id": COMPANY, "time": NOW, "changes": [change]}],
    }
    assert sim.security_envelope([], entry_time=5)["entry"][0]["time"] == 5
    assert EVENT_FIELDS["CUSTOM_INTEGRATION_EDIT"] == "integrations"
    assert EVENT_FIELDS["LOGIN_FAILED"] == "login"
    assert EVENT_FIELDS["TWO_FACTOR_CODE_FAILED"] == "two_factor"
    assert EVENT_FIELDS["ACCOUNT_PROMOTED_TO_ADMIN"] == "admin"
    assert set(EVENT_FIELDS.values()) == set(
        "login password two_factor account admin domain integrations files".split()
    )
    assert len(EVENT_FIELDS) == 30
