"""Telling the SOC about new alerts: e-mail (Graph sendMail), Teams, a signed webhook.

`detect_queue` (and governance, for its guardrail alerts) puts one message per new alert on the
notify queue (`requests.py`); `notify_queue` delivers it to each configured destination once
(`delivery.py`), rendered by `render.py` and sent by `channels.py`, recorded in `records.py`.
"""
