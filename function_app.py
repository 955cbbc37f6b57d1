"""Composition root: telemetry (only when configured) and one Blueprint per function folder."""

import azure.functions as func

import alerts_http
import connect_http
import console_http
import detect_queue
import govern_queue
import governance_http
import intel_timer
import investigate_http
import posture_timer
import retention_timer
import sync_timer
from shared import telemetry

telemetry.configure()
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (
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
):
    app.register_functions(blueprint)
