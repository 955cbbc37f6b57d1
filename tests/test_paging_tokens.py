"""Every listing's `next` on Azurite: signed and bound to its listing and query. Pages are walked
to the end; a token altered, cut short, sent with another query, to another listing, or made by
another deployment is a 400 naming `next`."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import timedelta

import pytest

from shared import analyst_api as api
from shared.access import READER, Principal
from shared.audit import AuditEntry
from shared.governance.actions_api import list_actions
from shared.paging import TokenSigner, query_digest
from shared.services import Services
from shared.web import Reply
from tests.conftest import KEY
from tests.test_alerts_api import alert
from tests.test_governance import NOW
from tests.test_governance_log import records

Listing = Callable[[Services, Mapping[str, str]], Reply]

LISTINGS: dict[str, tuple[Listing, str, str]] = {  # name: (listing, size parameter, items key)
    "alerts": (lambda svc, p: api.list_alerts(svc.analyst_deps, p), "top", "value"),
    "audit": (lambda svc, p: api.list_audit(svc.analyst_deps, p), "top", "value"),
    "governance": (lambda svc, p: list_actions(svc.governance, p, svc.signer), "limit", "actions"),
}


def seed(svc: Services) -> None:
    for n in range(7):
        svc.alerts.save(alert(n))
    records(svc, 7)
    who = Principal("user", "ana@contoso.com", "ana-id", frozenset({READER}))
    for n in range(7):
        svc.audit.write(
            AuditEntry(NOW + timedelta(minutes=n), who, "alert.update", f"a{n}", 200, {})
        )


def call(svc: Services, name: str, params: Mapping[str, str]) -> tuple[int, dict[str, object]]:
    listing = LISTINGS[name][0]
    reply = api.guarded(svc.analyst_deps, KEY, READER, lambda _: listing(svc, params))
    return reply.status, json.loads(reply.body)


def ids(body: Mapping[str, object], name: str) -> list[str]:
    items = body[LISTINGS[name][2]]
    assert isinstance(items, list)
    return [json.dumps(i, sort_keys=True) for i in items]


@pytest.mark.parametrize("name", list(LISTINGS))
def test_next_walks_every_page_once_and_refuses_any_other_token(svc: Services, name: str) -> None:
    seed(svc)
    size = LISTINGS[name][1]
    status, whole = call(svc, name, {size: "100"})
    assert status == 200 and whole["next"] is None and len(ids(whole, name)) == 7
    params = {size: "3"}
    pages: list[list[str]] = []
    tokens: list[str] = []
    while True:
        status, body = call(svc, name, params)
        assert status == 200, body
        pages.append(ids(body, name))
        if body["next"] is None:
            break
        assert isinstance(body["next"], str)
        tokens.append(body["next"])
        params = {size: "3", "next": body["next"]}
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == ids(whole, name)  # complete, in order, no repeat

    token = tokens[0]
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    other = next(n for n in LISTINGS if n != name)
    other_size = LISTINGS[other][1]
    foreign = TokenSigner(b"another deployment's key").sign(
        {"after": "x"}, query_digest({size: "3"}, name)
    )
    plain = base64.urlsafe_b64encode(json.dumps({"after": "log-0"}).encode()).decode()
    refused = [
        ({size: "3", "next": flipped}, name),  # altered
        ({size: "3", "next": token[:-4]}, name),  # cut short
        ({size: "3", "next": token + "AAAA"}, name),  # lengthened
        ({size: "4", "next": token}, name),  # another query
        ({size: "3", "next": foreign}, name),  # another deployment
        ({size: "3", "next": plain}, name),  # unsigned, as the governance log's once were
        ({other_size: "3", "next": token}, other),  # another listing
    ]
    for query, listing in refused:
        status, body = call(svc, listing, query)
        error = body.get("error")
        assert status == 400 and isinstance(error, dict), (query, listing, body)
        assert str(error["message"]).startswith("next:"), error


@pytest.mark.parametrize("name", list(LISTINGS))
def test_a_token_this_deployment_signed_for_another_listing_is_refused(
    svc: Services, name: str
) -> None:
    """The same query and key, another listing's name (the activity log's among them)."""
    seed(svc)
    query = {LISTINGS[name][1]: "3"}
    status, body = call(svc, name, query)
    assert status == 200 and isinstance(body["next"], str)
    for other in ("activities", *(n for n in LISTINGS if n != name)):
        token = svc.signer.sign({"after": "x"}, query_digest(query, other))
        status, body = call(svc, name, {**query, "next": token})
        assert status == 400 and "next:" in json.dumps(body), other
