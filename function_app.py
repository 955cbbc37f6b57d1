"""Composition root: one Blueprint per function folder, nothing else."""

import azure.functions as func

import connect_http
import detect_queue
import govern_queue
import sync_timer

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (connect_http.bp, sync_timer.bp, detect_queue.bp, govern_queue.bp):
    app.register_functions(blueprint)
