"""Install, sync and governance with Vigil's own telemetry on, everything it emits captured.

Run by `tests/test_telemetry.py` in a process of its own (OpenTelemetry's providers and the
`requests` instrumentation are process-wide): `python -m tests.telemetry_scenario OUT.json`.
`function_app` configures Azure Monitor exactly as in Azure (APPLICATIONINSIGHTS_CONNECTION_STRING
set), its ingestion endpoint a local server that keeps what the exporter sends. In-memory
exporters on the same providers keep every span and log record; a root handler at DEBUG keeps
every Python log record, urllib3's included. The output holds those and the secrets used.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Ingestion(ThreadingHTTPServer):
    """Application Insights' ingestion endpoint: accepts every envelope, keeps the bodies."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _IngestionHandler)
        self.bodies: list[str] = []


class _IngestionHandler(BaseHTTPRequestHandler):
    server: Ingestion

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        self.server.bodies.append(raw.decode("utf-8", "replace"))
        count = raw.count(b"\n") + 1
        answer = json.dumps({"itemsReceived": count, "itemsAccepted": count, "errors": []})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name} {record.getMessage()} args={record.args!r}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.lines.append(text)


@contextmanager
def ingestion() -> Iterator[Ingestion]:
    server = Ingestion()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def main(out: Path) -> None:
    os.environ["APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"] = "true"  # no calls to Microsoft
    os.environ["APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED"] = "true"  # (nor for its settings)
    os.environ["OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"] = "otel"  # no Azure VM metadata probe
    os.environ["OTEL_TRACES_SAMPLER"] = "always_on"  # every span kept, none sampled out
    keep = Keep()
    logging.getLogger().addHandler(keep)
    logging.getLogger().setLevel(logging.DEBUG)

    from opentelemetry import trace
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from local.scenario import brute_force
    from local.stack import APP_SECRET, local_stack
    from shared import telemetry

    spans, otel_logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    errors: list[str] = []
    with ingestion() as server:
        host, port = server.server_address[:2]
        connection = (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint=http://{host!s}:{port}/"
        )
        env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": connection}
        with local_stack(port=None, triggers=False, extra_env=env) as stack:
            tracer_provider = trace.get_tracer_provider()
            logger_provider = get_logger_provider()
            assert telemetry._instruments is not None, "telemetry did not start"
            assert isinstance(tracer_provider, TracerProvider)
            assert isinstance(logger_provider, LoggerProvider)
            tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
            logger_provider.add_log_record_processor(SimpleLogRecordProcessor(otel_logs))
            wp, graph = stack.workplace, stack.graph

            # Install: the OAuth redirect (code, state), the code exchange, /community.
            assert stack.install().status_code == 200
            # Webhooks, then sync: directory reads with the token and appsecret_proof.
            victim = wp.members[1]
            for delivery in brute_force(wp, victim, START + timedelta(minutes=30)):
                body = wp.security_envelope(list(delivery.changes), entry_time=1)
                assert wp.deliver(stack.webhook_url, body).status_code == 200
            wp.fail("/community/members", status=500, times=1)  # an error logged on the way
            stack.host.run_timer("sync_timer")
            stack.host.run_timer("sync_timer")
            # Detection, then governance: MSAL's client credentials, a Graph call with a bearer.
            while stack.host.process_queue_once("detect_queue") or stack.host.process_queue_once(
                "govern_queue"
            ):
                pass
            revokes = [
                r for r in graph.graph_requests() if r.path.endswith("/revokeSignInSessions")
            ]
            assert revokes, "governance made no Graph call"
            # A failure whose exception text could hold a URL: Workplace unreachable.
            from shared.services import get_services
            from shared.workplace.client import WorkplaceClient

            token = wp.installs[0].token
            dead = WorkplaceClient("http://127.0.0.1:9", wp.app_id, APP_SECRET)
            dead.retry.attempts = 1
            try:
                dead.community(token)
            except Exception as exc:
                logging.getLogger("shared.scenario").exception("expected failure")
                errors.append("".join(traceback.format_exception(exc)))
            secrets = {
                "app secret": [APP_SECRET],
                "access token": [i.token for i in wp.installs],
                "appsecret_proof": sorted(
                    {
                        r.query["appsecret_proof"]
                        for r in wp.requests
                        if "appsecret_proof" in r.query
                    }
                ),
                "code": list(wp.install_codes),
                "state": [c.state for c in wp.install_codes.values() if c.state],
                "client secret": [graph.client_secret],
                "bearer token": graph.issued_tokens,
            }
            assert all(secrets.values()), secrets
            get_services()  # still the stack's
            tracer_provider.force_flush()
            logger_provider.force_flush()
    finished = spans.get_finished_spans()
    out.write_text(
        json.dumps(
            {
                "secrets": secrets,
                "spans": [
                    {
                        "name": s.name,
                        "attributes": {k: str(v) for k, v in (s.attributes or {}).items()},
                        "events": [f"{e.name} {dict(e.attributes or {})!r}" for e in s.events],
                        "status": s.status.description or "",
                    }
                    for s in finished
                ],
                "otel_logs": [
                    f"{r.log_record.body!r} {dict(r.log_record.attributes or {})!r}"
                    for r in otel_logs.get_finished_logs()
                ],
                "log_lines": keep.lines,
                "exceptions": errors,
                "exported": server.bodies,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
