"""Composition root: telemetry (only when configured) and one Blueprint per function folder.

The host indexes `app`, built by `create_app()` when the worker loads this module (the app's
start). Settings are read there for telemetry only; every other feature reads its settings when
a function first runs (`shared.services.get_services()`).
"""

import azure.functions as func

import alerts_http
import connect_http
import console_http
import detect_queue
import govern_queue
import governance_http
import intel_timer
import investigate_http
import notify_queue
import posture_timer
import retention_timer
import siem_timer
import sync_timer
from shared import telemetry

BLUEPRINTS = (
    connect_http.bp,
    sync_timer.bp,
    detect_queue.bp,
    govern_queue.bp,
    governance_http.bp,
    alerts_http.bp,
    intel_timer.bp,
    retention_timer.bp,
    investigate_http.bp,
    posture_timer.bp,
    console_http.bp,
    notify_queue.bp,
    siem_timer.bp,
)


def create_app() -> func.FunctionApp:
    """The function app: telemetry set up (when configured), every blueprint registered."""
    telemetry.configure()
    function_app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for blueprint in BLUEPRINTS:
        function_app.register_functions(blueprint)
    return function_app


app = create_app()
