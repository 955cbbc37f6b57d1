"""Alerts (and, if asked, activities) to a Log Analytics custom table through the Logs
Ingestion API (`azure-monitor-ingestion`, the managed identity).

What is to be sent waits in the `SiemOutbox` table (`outbox.py`): a row per alert (from the
notify queue) or per detected activity batch (from `detect_queue`), written idempotently, and
never again once its record says sent. `siem_timer` sends what waits in batches (`export.py`).
"""
