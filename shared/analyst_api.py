"""The analyst's HTTP API, independent of the Functions SDK: each route's answer as a `Reply`.

Every route checks the caller's role first (`shared.access`), answers bad input with a 400 that
names the parameter, and writes each command (a triage change) to the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import openapi
from shared import query_params as q
from shared.access import RESPONDER, Principal, Role, authorize, forgery_safe
from shared.activity_log import ActivityLog, ActivityQuery, Position
from shared.alerts import from_entity
from shared.audit import AuditEntry, AuditLog
from shared.governance.actions_api import record_json
from shared.governance.records import ActionFilter, ActionStore
from shared.id_index import MAX_ID
from shared.paging import TokenSigner
from shared.posture import PostureStore
from shared.suppressions import SuppressionStore
from shared.suppressions import from_alert as suppression_from
from shared.triage import Conflict, TriageStore, alert_json, etag_of, history, parse_change
from shared.user_page import UserPage
from shared.web import Reply

AUDIT_PARAMS = ("since", "actor", "command", "target", "top", "next")


@dataclass(frozen=True)
class AnalystDeps:
    """What the analyst routes read and write; the signing key (a stored row) and what needs it
    are read when a route first needs them."""

    app_service_auth: bool  # APP_SERVICE_AUTH
    automation_key: str | None  # AUTOMATION_KEY
    triage: TriageStore
    actions: ActionStore
    suppressions: SuppressionStore
    posture: PostureStore
    audit: AuditLog
    signer: Callable[[], TokenSigner]
    activity_log: Callable[[], ActivityLog]
    user_page: Callable[[], UserPage]


def guarded(
    deps: AnalystDeps,
    headers: Mapping[str, str],
    role: Role,
    answer: Callable[[Principal], Reply],
    query: Mapping[str, str] | None = None,
    allowed: tuple[str, ...] = (),
) -> Reply:
    """`answer` for a caller holding `role`; 401/403 otherwise; BadInput its 4xx (400, 413). With
    `query`, a parameter not in `allowed` is a 400 before anything is read."""
    who = authorize(
        headers,
        role,
        app_service_auth=deps.app_service_auth,
        automation_key=deps.automation_key,
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
        return Reply.error(bad.status, str(bad))


def list_alerts(deps: AnalystDeps, params: Mapping[str, str]) -> Reply:
    alerts, token = deps.triage.page(params, deps.signer())
    return Reply.json(200, {"value": alerts, "next": token})


def get_alert(deps: AnalystDeps, alert_id: str) -> Reply:
    entity = deps.triage.find(checked_id(alert_id))
    if entity is None:
        return Reply.error(404, f"id: no alert {alert_id!r}")
    return _detail(deps, entity, 200)


def checked_id(alert_id: str) -> str:
    """The path's alert id, or BadInput (a 400) when it could not be one."""
    return q.checked("id", alert_id, max_len=MAX_ID, key=True)


def _detail(deps: AnalystDeps, entity: Any, status: int) -> Reply:
    answer = alert_json(entity)
    query = ActivityQuery.related_to(from_entity(dict(entity)))
    log = deps.activity_log()
    answer["activities"] = [log.as_json(a) for _, a in log.rows(query, Position())]
    answer["history"] = history(entity)
    answer["governanceActionRecords"] = [
        record_json(r)
        for r in deps.actions.query(
            ActionFilter(tenant_id=answer["tenantId"], alert_id=answer["id"]), limit=100
        )
    ]
    reply = Reply.json(status, answer)
    return Reply(reply.status, reply.body, reply.mimetype, {"ETag": etag_of(entity)})


def patch_alert(
    deps: AnalystDeps, alert_id: str, body: bytes, if_match: str, who: Principal, now: datetime
) -> Reply:
    change = parse_change(body)
    checked_id(alert_id)
    try:
        entity, entry = deps.triage.change(alert_id, change, who, now, if_match.strip(" *"))
    except LookupError:
        return Reply.error(404, f"id: no alert {alert_id!r}")
    except Conflict:
        _audit(deps, who, now, "alert.update", alert_id, 412, {"ifMatch": if_match})
        return Reply.error(
            412, "the alert changed since you read it: read it again (new ETag) and redo"
        )
    tenant = str(entity["PartitionKey"])
    _audit(deps, who, now, "alert.update", alert_id, 200, entry, tenant)
    if change.suppress_days:
        alert = from_entity(dict(entity))
        made = suppression_from(alert, change.suppress_days, who.name, now, alert.classification)
        deps.suppressions.save(made)
        _audit(deps, who, now, "suppression.create", made.id, 200, made.as_json(), tenant)
    return _detail(deps, entity, 200)


def posture(deps: AnalystDeps, params: Mapping[str, str]) -> Reply:
    q.known(params, ("tenant",))
    return Reply.json(200, {"value": deps.posture.all(q.text(params, "tenant", key=True))})


def openapi_document(params: Mapping[str, str]) -> Reply:
    """`GET /api/openapi.json` (anyone may read it: it describes, it holds no data)."""
    try:
        q.known(params, ())
    except q.BadInput as bad:
        return Reply.error(400, str(bad))
    return Reply.json(200, openapi.document())


def list_suppressions(deps: AnalystDeps, params: Mapping[str, str]) -> Reply:
    q.known(params, ("tenant", "user", "detector"))
    user, detector = q.text(params, "user"), q.text(params, "detector")
    found = [
        s.as_json()
        for s in deps.suppressions.all(q.text(params, "tenant", key=True))
        if (not user or s.user_id == user) and (not detector or s.detector_id == detector)
    ]
    return Reply.json(200, {"value": found})


def delete_suppression(
    deps: AnalystDeps, suppression_id: str, who: Principal, now: datetime
) -> Reply:
    removed = deps.suppressions.delete(suppression_id)
    if removed is None:
        return Reply.error(404, f"id: no suppression {suppression_id!r}")
    _audit(deps, who, now, "suppression.delete", suppression_id, 200, removed.as_json(),
           removed.tenant_id)  # fmt: skip
    return Reply(204)


def list_activities(deps: AnalystDeps, params: Mapping[str, str]) -> Reply:
    log = deps.activity_log()
    rows, token, fmt = log.page(params)
    if fmt == "csv":
        headers = {"Content-Disposition": 'attachment; filename="activities.csv"'}
        if token:
            headers["Vigil-Next"] = token
        text = log.csv_text(rows, header=not params.get("next"))
        return Reply(200, text, "text/csv", headers)
    return Reply.json(200, {"value": [log.as_json(a) for a in rows], "next": token})


def user_page(deps: AnalystDeps, ident: str, tenant: str, now: datetime) -> Reply:
    if not ident or len(ident) > 320:
        return Reply.error(400, "id: expected a Workplace user id or an e-mail address")
    q.checked("id", ident, max_len=320)
    tenant = q.checked("tenant", tenant.strip(), key=True)
    user = deps.user_page().find(ident, tenant)
    if user is None:
        return Reply.error(404, f"id: no user {ident!r} in the synced directory")
    return Reply.json(200, deps.user_page().answer(user, now))


def list_audit(deps: AnalystDeps, params: Mapping[str, str]) -> Reply:
    q.known(params, AUDIT_PARAMS)
    since = q.time(params, "since")
    top = q.integer(params, "top", 100, 1, 1000)
    where = {
        column: value
        for column, name in (("ActorName", "actor"), ("Command", "command"), ("Target", "target"))
        if (value := q.text(params, name))
    }
    signer = deps.signer()
    after = signer.after(params, "audit")
    entries, last = deps.audit.page(where, after=after, since=since, limit=top)
    token = signer.next_token(params, "audit", last)
    return Reply.json(200, {"value": [e.as_json() for e in entries], "next": token})


def _audit(
    deps: AnalystDeps,
    who: Principal,
    now: datetime,
    command: str,
    target: str,
    status: int,
    detail: dict[str, Any],
    tenant: str = "",
) -> None:
    deps.audit.write(AuditEntry(now, who, command, target, status, detail, tenant))


def audited(
    deps: AnalystDeps, who: Principal, now: datetime, command: str, target: str, reply: Reply
) -> Reply:
    """`reply` after writing the command it answers to the audit log."""
    _audit(deps, who, now, command, target, reply.status, {})
    return reply
