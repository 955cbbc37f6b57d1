"""The OpenAPI document: valid 3.1, and the same routes and methods as the app registers."""

from __future__ import annotations

import re

import requests
from openapi_spec_validator import validate

from shared.openapi import document
from tests.test_bindings import triggers

_CONSTRAINED = re.compile(r"\{(\w+):regex\(\^\(([^)]*)\)\$\)\}")
_PLAIN = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def registered() -> set[tuple[str, str]]:
    """(path, method) of every HTTP function; a regex alternation becomes one path each."""
    out: set[tuple[str, str]] = set()
    for trigger in triggers().values():
        if trigger["type"] != "httpTrigger":
            continue
        routes = [trigger["route"]]
        while any(_CONSTRAINED.search(r) for r in routes):
            expanded = []
            for r in routes:
                m = _CONSTRAINED.search(r)
                if m is None:
                    expanded.append(r)
                    continue
                expanded += [r[: m.start()] + alt + r[m.end() :] for alt in m[2].split("|")]
            routes = expanded
        for route in routes:
            for method in trigger["methods"]:
                out.add(("/" + _PLAIN.sub(r"{\1}", route), method.lower()))
    return out


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_registered_route_is_documented_and_every_documented_route_exists() -> None:
    documented = {(path, m) for path, item in document()["paths"].items() for m in item}
    assert registered() == documented


def test_the_app_serves_it(azurite_connection_string: str) -> None:
    from local.stack import local_stack

    with local_stack(port=None, triggers=False) as stack:
        answer = requests.get(f"{stack.api}/openapi.json", timeout=10)
    assert answer.status_code == 200 and answer.json() == document()


def test_every_secured_route_documents_its_refusals() -> None:
    for path, item in document()["paths"].items():
        for method, op in item.items():
            if not op.get("x-vigil-role"):
                continue
            assert {"401", "403"} <= set(op["responses"]), (path, method)
            takes_input = "requestBody" in op or any(p["in"] == "query" for p in op["parameters"])
            assert "400" in op["responses"] or not takes_input, (path, method)
