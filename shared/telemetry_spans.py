"""The span processor Vigil adds to Azure Monitor's: no query string in a span's URL attributes.

Workplace calls carry `appsecret_proof` in the query string and OAuth redirects carry `code` and
`state`; the `requests` instrumentation records the whole URL (`url.full`, or `http.url` in the
older conventions). The attributes are set when the span starts, so they are rewritten here in
`on_start`, before any exporter sees the span. Imported only when telemetry is on.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

from shared.logsafe import without_query

URL_ATTRIBUTES = ("url.full", "http.url", "http.target", "url.original")
QUERY_ATTRIBUTES = ("url.query",)


class UrlQueryRemover(SpanProcessor):
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attributes = span.attributes or {}
        for name in URL_ATTRIBUTES:
            value = attributes.get(name)
            if isinstance(value, str) and ("?" in value or "#" in value):
                span.set_attribute(name, without_query(value))
        for name in QUERY_ATTRIBUTES:
            if attributes.get(name):
                span.set_attribute(name, "<removed>")
