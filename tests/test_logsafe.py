"""Log-line safety: untrusted text quoted, query strings kept out of URLs and urllib3's lines."""

from __future__ import annotations

import logging

import pytest

from shared.logsafe import QueryStringFilter, quoted, redact_urllib3_logs, without_query


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("LOGIN_FAILED", "'LOGIN_FAILED'"),
        ("a\nb\rc", "'a\\nb\\rc'"),
        ("\x1b[31mred", "'\\x1b[31mred'"),
        ("line\u2028sep\u202eRTL", "'line\\u2028sep\\u202eRTL'"),
        ("Zoë Łukasz", "'Zoë Łukasz'"),
        (12345, "'12345'"),
    ],
)
def test_quoted_escapes_what_could_split_or_rewrite_a_line(value: object, expected: str) -> None:
    assert quoted(value) == expected


def test_quoted_cuts_long_text_and_says_how_much() -> None:
    text = quoted("x" * 1000, limit=10)
    assert text == "'xxxxxxxxxx'...(+990 chars)"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://graph.workplace.com/community?fields=id&appsecret_proof=ab12&access_token=t",
            "https://graph.workplace.com/community",
        ),
        ("http://h/api/workplace/callback?code=c&state=s#frag", "http://h/api/workplace/callback"),
        ("/community/members?limit=100&appsecret_proof=ab", "/community/members"),
        (
            "https://graph.microsoft.com/v1.0/users/a@b.c",
            "https://graph.microsoft.com/v1.0/users/a@b.c",
        ),
    ],
)
def test_without_query(url: str, expected: str) -> None:
    assert without_query(url) == expected


def test_urllib3_request_lines_lose_their_query_string(caplog: pytest.LogCaptureFixture) -> None:
    redact_urllib3_logs()
    redact_urllib3_logs()  # idempotent
    logger = logging.getLogger("urllib3.connectionpool")
    assert sum(isinstance(f, QueryStringFilter) for f in logger.filters) == 1
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    logger.debug(
        '%s://%s:%s "%s %s %s" %s %s',
        "https",
        "graph.workplace.com",
        443,
        "GET",
        "/community?fields=id&appsecret_proof=SECRETPROOF",
        "HTTP/1.1",
        200,
        None,
    )
    (record,) = caplog.records
    assert "SECRETPROOF" not in record.getMessage()
    assert '"GET /community?<query removed> HTTP/1.1" 200' in record.getMessage()


def test_span_url_attributes_lose_their_query_string_in_either_convention() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared.telemetry_spans import UrlQueryRemover

    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # this test's own, not the process-wide one
    provider.add_span_processor(UrlQueryRemover())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    url = "https://graph.workplace.com/community?fields=id&appsecret_proof=SECRETPROOF"
    attributes = {
        "url.full": url,
        "http.url": url,
        "http.target": "/community?appsecret_proof=SECRETPROOF",
        "url.query": "appsecret_proof=SECRETPROOF",
        "server.address": "graph.workplace.com",
    }
    with provider.get_tracer("test").start_as_current_span("GET", attributes=attributes):
        pass

    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {
        "url.full": "https://graph.workplace.com/community",
        "http.url": "https://graph.workplace.com/community",
        "http.target": "/community",
        "url.query": "<removed>",
        "server.address": "graph.workplace.com",
    }
