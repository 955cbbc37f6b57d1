"""The analyst's HTTP API, independent of the Functions SDK: each route's answer as a `Reply`.

Every route checks the caller's role first (`shared.access`), answers bad input with a 400 that
names the parameter, and writes each command (a triage change) to the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from shared import openapi
from shared import query_params as q
from shared.access import RESPONDER, Principal, Role, authorize, forgery_safe
from shared.activity_log import ActivityQuery, Position
from shared.alerts import from_entity
from shared.audit import AuditEntry
from shared.governance.actions_api import record_json
from shared.governance.records import ActionFilter
from shared.paging import query_digest
from shared.services import Services
from shared.suppressions import from_alert as suppression_from
from shared.triage import Conflict, alert_json, etag_of, history, parse_change
from shared.web import Reply

AUDIT_PARAMS = ("since", "actor", "command", "target", "top", "next")


def guarded(
    svc: Services,
    headers: Mapping[str, str],
    role: Role,
    answer: Callable[[Principal], Reply],
    query: Mapping[str, str] | None = None,
    allowed: tuple[str, ...] = (),
) -> Reply:
    """`answer` for a caller holding `role`; 401/403 otherwise; BadInput becomes a 400. With
    `query`, a parameter not in `allowed` is a 400 before anything is read."""
    who = authorize(
        headers,
        role,
        app_service_auth=svc.settings.app_service_auth,
        automation_key=svc.settings.automation_key,
    )
    if isinstance(who, Reply):
        return who
    if role == RESPONDER and not forgery_safe(who, headers):
        return Reply.error(
            403, "a write from a browser session must send X-Requested-With (the console does)"
        )
    try:
        if query is not None:
            q.known(query, allowed)
        return answer(who)
    except q.BadInput as bad:
        return Reply.error(400, str(bad))


def list_alerts(svc: Services, params: Mapping[str, str]) -> Reply:
    alerts, token = svc.triage.page(params, svc.signer)
    return Reply.json(200, {"value": alerts, "next": token})


def get_alert(svc: Services, alert_id: str) -> Reply:
    entity = svc.triage.find(alert_id)
    if entity is None:
        return Reply.error(404, f"id: no alert {alert_id!r}")
    return _detail(svc, entity, 200)


def _detail(svc: Services, entity: Any, status: int) -> Reply:
    answer = alert_json(entity)
    query = ActivityQuery.related_to(from_entity(dict(entity)))
    log = svc.activity_log
    answer["activities"] = [log.as_json(a) for _, a in log.rows(query, Position())]
    answer["history"] = history(entity)
    answer["governanceActionRecords"] = [
        record_json(r) for r in svc.actions.query(ActionFilter(alert_id=answer["id"]), limit=100)
    ]
    reply = Reply.json(status, answer)
    return Reply(reply.status, reply.body, reply.mimetype, {"ETag": etag_of(entity)})


def patch_alert(
    svc: Services, alert_id: str, body: bytes, if_match: str, who: Principal, now: datetime
) -> Reply:
    change = parse_change(body)
    try:
        entity, entry = svc.triage.change(alert_id, change, who, now, if_match.strip(" *"))
    except LookupError:
        return Reply.error(404, f"id: no alert {alert_id!r}")
    except Conflict:
        _audit(svc, who, now, "alert.update", alert_id, 412, {"ifMatch": if_match})
        return Reply.error(
            412, "the alert changed since you read it: read it again (new ETag) and redo"
        )
    tenant = str(entity["PartitionKey"])
    _audit(svc, who, now, "alert.update", alert_id, 200, entry, tenant)
    if change.suppress_days:
        alert = from_entity(dict(entity))
        made = suppression_from(alert, change.suppress_days, who.name, now, alert.classification)
        svc.suppressions.save(made)
        _audit(svc, who, now, "suppression.create", made.id, 200, made.as_json(), tenant)
    return _detail(svc, entity, 200)


def posture(svc: Services, params: Mapping[str, str]) -> Reply:
    q.known(params, ("tenant",))
    return Reply.json(200, {"value": svc.posture.all(q.text(params, "tenant", key=True))})


def openapi_document(params: Mapping[str, str]) -> Reply:
    """`GET /api/openapi.json` (anyone may read it: it describes, it holds no data)."""
    try:
        q.known(params, ())
    except q.BadInput as bad:
        return Reply.error(400, str(bad))
    return Reply.json(200, openapi.document())


def list_suppressions(svc: Services, params: Mapping[str, str]) -> Reply:
    q.known(params, ("tenant", "user", "detector"))
    user, detector = q.text(params, "user"), q.text(params, "detector")
    found = [
        s.as_json()
        for s in svc.suppressions.all(q.text(params, "tenant", key=True))
        if (not user or s.user_id == user) and (not detector or s.detector_id == detector)
    ]
    return Reply.json(200, {"value": found})


def delete_suppression(svc: Services, suppression_id: str, who: Principal, now: datetime) -> Reply:
    removed = svc.suppressions.delete(suppression_id)
    if removed is None:
        return Reply.error(404, f"id: no suppression {suppression_id!r}")
    _audit(svc, who, now, "suppression.delete", suppression_id, 200, removed.as_json(),
           removed.tenant_id)  # fmt: skip
    return Reply(204)


def list_activities(svc: Services, params: Mapping[str, str]) -> Reply:
    log = svc.activity_log
    rows, token, fmt = log.page(params)
    if fmt == "csv":
        headers = {"Content-Disposition": 'attachment; filename="activities.csv"'}
        if token:
            headers["Vigil-Next"] = token
        text = log.csv_text(rows, header=not params.get("next"))
        return Reply(200, text, "text/csv", headers)
    return Reply.json(200, {"value": [log.as_json(a) for a in rows], "next": token})


def user_page(svc: Services, ident: str, tenant: str, now: datetime) -> Reply:
    if not ident or len(ident) > 320:
        return Reply.error(400, "id: expected a Workplace user id or an e-mail address")
    user = svc.user_page.find(ident, tenant)
    if user is None:
        return Reply.error(404, f"id: no user {ident!r} in the synced directory")
    return Reply.json(200, svc.user_page.answer(user, now))


def list_audit(svc: Services, params: Mapping[str, str]) -> Reply:
    q.known(params, AUDIT_PARAMS)
    since = q.time(params, "since")
    top = q.integer(params, "top", 100, 1, 1000)
    where = {
        column: value
        for column, name in (("ActorName", "actor"), ("Command", "command"), ("Target", "target"))
        if (value := q.text(params, name))
    }
    digest = query_digest(params)
    after = str(svc.signer.verify(params["next"], digest)["after"]) if params.get("next") else None
    entries, last = svc.audit.page(where, after=after, since=since, limit=top)
    token = svc.signer.sign({"after": last}, digest) if last else None
    return Reply.json(200, {"value": [e.as_json() for e in entries], "next": token})


def _audit(
    svc: Services,
    who: Principal,
    now: datetime,
    command: str,
    target: str,
    status: int,
    detail: dict[str, Any],
    tenant: str = "",
) -> None:
    svc.audit.write(AuditEntry(now, who, command, target, status, detail, tenant))


def audited(
    svc: Services, who: Principal, now: datetime, command: str, target: str, reply: Reply
) -> Reply:
    """`reply` after writing the command it answers to the audit log."""
    _audit(svc, who, now, command, target, reply.status, {})
    return reply
