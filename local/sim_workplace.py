"""A simulated Workplace by Meta tenant over real HTTP, for tests, `make run` and `make demo`.

It speaks the wire format of `workplace-api.md` and is deliberately strict: what real Workplace
would reject (a reused or stale install code, a missing or stale `appsecret_proof`, an unknown
field) is rejected here too, with Graph's error envelope. It is stricter in one place: a code
exchange with `client_secret`, or a call with `access_token`, in the query string is refused
(Graph accepts them), so no caller that puts a secret in a URL passes its tests. It also sends
signed `workplace_security` webhooks, builds uninstall `signed_request` values, and carries out
the account actions (`POST /{id}/logout`, `POST /{id}?active=false|true`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import requests
from requests import Response as ClientResponse

from local.http import Fault, RecordedRequest, Request, Response, Simulator, raw_target

# Workplace's limits (workplace-api.md §3 and §4); a proof stamped at most 5 s ahead is tolerated.
CODE_TTL_SECONDS = 300
PROOF_MAX_AGE_SECONDS = 300
PROOF_MAX_FUTURE_SECONDS = 5
DEFAULT_PAGE_LIMIT = 25
GRAPH_API_VERSION = "v18.0"

# The attested sample record's user agent and how Workplace shows it (workplace-api.md §6.3).
FIREFOX_USERAGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:86.0) Gecko/20100101 Firefox/86.0"
)
WEBHOOK_USER_AGENT = "facebookexternalua"

# Every event of workplace-events.md mapped to its change `field`. Only CUSTOM_INTEGRATION_EDIT is
# attested; the rest are Vigil's assumed names, kept as data.
EVENT_FIELDS: dict[str, str] = {
    event: change_field
    for change_field, events in {
        "login": "LOGIN LOGIN_FAILED LOGOUT FORCED_LOGOUT SSO_REAUTHENTICATION",
        "password": "PASSWORD_CHANGED PASSWORD_RESET_SUCCEEDED PASSWORD_RESET_CODE_REQUESTED "
        "PASSWORD_RESET_INCORRECT_CODE FORCED_PASSWORD_RESET",
        "two_factor": "TWO_FACTOR_ENABLED TWO_FACTOR_DISABLED TWO_FACTOR_CODE_SUCCEEDED "
        "TWO_FACTOR_CODE_FAILED",
        "account": "ACCOUNT_AT_RISK ACCOUNT_UNCLAIMED ACCOUNT_DEACTIVATED ACCOUNT_ACTIVATED "
        "ACCOUNT_DELETED ACCOUNT_CREATED EMAIL_CHANGED",
        "admin": "ADMIN_ROLE_CHANGED ADMIN_CREATED ADMIN_REMOVED ACCOUNT_PROMOTED_TO_ADMIN",
        "domain": "DOMAIN_ADDED DOMAIN_REMOVED",
        "integrations": "CUSTOM_INTEGRATION_EDIT",
        "files": "FILE_DOWNLOADED FILE_UPLOADED",
    }.items()
    for event in events.split()
}

# What the simulated app is configured with on developers.facebook.com; an install grants all of
# them. Upper-case enums are inferred (§3).
DEFAULT_APP_PERMISSIONS = tuple(
    "MANAGE_ACCOUNTS MANAGE_WORK_PROFILES PROVISION_USER_ACCOUNTS READ_GROUP_CONTENT "
    "READ_USER_EMAIL".split()
)
# Reading groups needs one of these (the community node's rule, workplace-api.md §3; inferred).
_GROUP_PERMISSIONS = frozenset({"READ_GROUP_CONTENT", "MANAGE_GROUPS"})

# The fields of each node type. The member fields Workplace has but the simulator does not model
# are accepted and simply absent from the answer, as Graph omits unset fields.
_NODE_FIELDS: dict[str, frozenset[str]] = {
    "User": frozenset(
        """id name first_name last_name email title department active account_invite_time
        account_claim_time employee_number external_id division cost_center organization locale
        manager updated_time link picture primary_phone primary_address frontline""".split()
    ),
    "Group": frozenset("id name description privacy purpose email updated_time archived".split()),
    "Community": frozenset({"id", "name", "install"}),
}
# The community's member edges: which members each lists.
_MEMBER_EDGES: dict[str, Callable[[SimMember], bool]] = {
    "members": lambda m: m.active,
    "former_members": lambda m: not m.active,
    "admins": lambda m: m.active and m.admin,
}

# Graph's messages for the error codes `fail` scripts (workplace-api.md §10).
_FAULT_MESSAGES = {
    1: "An unknown error has occurred.",
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    102: "API Session invalid.",
    190: "Error validating access token: Session has expired.",
    341: "(#341) Application limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
}

_GRAPH_TIME = "%Y-%m-%dT%H:%M:%S+0000"
_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/|$)")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_FORM = "application/x-www-form-urlencoded"
_SECRET_PARAMS = ("access_token", "client_secret")


@dataclass
class SimMember:
    """One person in the simulated community; mutate it to simulate directory changes."""

    id: str
    name: str
    email: str
    title: str = ""
    department: str = ""
    active: bool = True
    admin: bool = False
    account_invite_time: int | None = None
    account_claim_time: int | None = None
    logouts: int = 0  # `POST /{id}/logout` calls carried out


@dataclass
class SimGroup:
    """One group; its `members` edge lists the active members among `member_ids`, in order."""

    id: str
    name: str
    privacy: str = "CLOSED"
    description: str = ""
    member_ids: list[str] = field(default_factory=list)


@dataclass
class InstallCode:
    """A one-time code handed out by the install dialog."""

    redirect_uri: str
    issued_at: float
    state: str | None = None
    used: bool = False


@dataclass
class SimInstall:
    """An access token the simulator accepts and what it grants: an install's (made by a code
    exchange) or, with `id` None, a custom integration's."""

    id: str | None
    token: str
    permissions: tuple[str, ...]
    require_proof: bool = True
    uninstalled: bool = False  # its token then fails with 190/458


@dataclass(frozen=True)
class Delivery:
    """One webhook POST made by `deliver`."""

    url: str
    body: bytes
    headers: dict[str, str]
    status_code: int


@dataclass(eq=False)
class _GraphError(Exception):
    """A Graph error envelope to send back; `challenge` is the OAuth error keyword of Graph's
    WWW-Authenticate header, e.g. "invalid_token"."""

    message: str
    code: int
    subcode: int | None = None
    _: KW_ONLY
    error_type: str = "OAuthException"
    status: int = 400
    challenge: str | None = None


class _DialogError(Exception):
    """The install dialog's own HTML error page (it never redirects an invalid request)."""


@dataclass(frozen=True)
class _Incoming:
    method: str
    path: str  # as sent, with its version prefix
    query: str  # the query string as sent
    endpoint: str  # without the version prefix or a trailing "/"
    params: dict[str, list[str]]  # the query's and a form body's parameters, unredacted
    headers: dict[str, str]  # lower-case names, unredacted

    def last(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _random_digits(length: int, taken: Collection[str] = ()) -> str:
    while True:
        digits = str(secrets.choice(range(1, 10)))
        digits += "".join(secrets.choice(string.digits) for _ in range(length - 1))
        if digits not in taken:
            return digits


def _new_token() -> str:
    return "DQVJ" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(176))


def _graph_json(payload: Any) -> bytes:
    """Serialise like Meta does: compact, non-ASCII as lower-case \\uXXXX, and "/" as "\\/".

    Meta signs webhooks over this escaped form, so a receiver that re-serialises the parsed body
    computes a different signature; sending it this way catches that bug.
    """
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    # "/" can only occur inside JSON strings, so escaping every one keeps the document valid.
    return text.replace("/", "\\/").encode("ascii")


def _graph_time(epoch: int | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime(_GRAPH_TIME)


def _parse_fields(raw: str) -> list[str]:
    """Graph's `fields=` as a flat comma list, e.g. "id,name,install" (nesting is not modelled)."""
    names = [name.strip() for name in raw.split(",")]
    if not all(_FIELD_NAME.fullmatch(name) for name in names):
        raise _GraphError(f'Syntax error "Field name expected." in fields: {raw}', 2500)
    return names


def _check_fields(requested: list[str], node_type: str) -> None:
    if unknown := [name for name in requested if name not in _NODE_FIELDS[node_type]]:
        raise _no_field(unknown[0], node_type)


def _no_field(name: str, node_type: str) -> _GraphError:
    return _GraphError(
        f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})", 100
    )


def _select(values: Mapping[str, Any], requested: list[str], node_type: str) -> dict[str, Any]:
    """Graph's field selection: `id` always first, unknown names rejected, unset fields omitted."""
    _check_fields(requested, node_type)
    selected = {name: values.get(name) for name in ["id", *requested]}
    return {name: value for name, value in selected.items() if value not in (None, "")}


def _unsupported(method: str, object_id: str) -> _GraphError:
    return _GraphError(
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, "
        "cannot be loaded due to missing permissions, or does not support this operation. "
        "Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
        100,
        33,
        error_type="GraphMethodException",
    )


def _proof_error(message: str) -> _GraphError:
    return _GraphError(message, 100, error_type="GraphMethodException")


def _code_error(message: str, subcode: int | None = None) -> _GraphError:
    return _GraphError(message, 100, subcode, challenge="invalid_code")


def _no_permission(what: str, needs: str) -> _GraphError:
    message = f"(#10) Application does not have permission for this action: {what} requires {needs}"
    return _GraphError(message, 10)


def _member_values(member: SimMember) -> dict[str, Any]:
    """The member node's values (attributes that are no node field are never selected)."""
    first, _, last = member.name.partition(" ")
    return vars(member) | {
        "first_name": first,
        "last_name": last,
        "account_invite_time": _graph_time(member.account_invite_time),
        "account_claim_time": _graph_time(member.account_claim_time),
    }


def _cursor(edge: str, index: int) -> str:
    return _b64url(f"{edge}:{index}".encode())


def _cursor_index(cursor: str, edge: str) -> int:
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        kind, _, index = decoded.partition(":")
        if kind == edge and index.isdigit():
            return int(index)
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        pass
    raise _GraphError(f"(#100) The after cursor {cursor!r} is not valid for this edge", 100)


def _params(request: Request) -> dict[str, list[str]]:
    """The query's parameters and, as Graph reads them alike, a POST form body's."""
    raw = urlsplit(raw_target(request))
    params = parse_qs(raw.query, keep_blank_values=True)
    body = request.get_data()
    if body and request.headers.get("Content-Type", "").startswith(_FORM):
        for name, values in parse_qs(body.decode("utf-8", "replace"), True).items():
            params.setdefault(name, []).extend(values)
    return params


def _with_query(url: str, params: Mapping[str, str]) -> str:
    split = urlsplit(url)
    query = f"{split.query}&{urlencode(params)}" if split.query else urlencode(params)
    return urlunsplit((split.scheme, split.netloc, split.path, query, split.fragment))


def _html(status: int, message: str) -> Response:
    return Response(
        f"<!DOCTYPE html><html><body>{message}</body></html>", status, mimetype="text/html"
    )


# Contoso's usual cast, so e-mails join with a simulated Entra ID tenant:
# (id, name, e-mail local part, title, department, active, admin).
_SEED_MEMBERS = [
    ("100064094363063", "Megan Bowen", "megan.bowen", "IT Administrator", "IT", True, True),
    ("100064094363101", "Adele Vance", "adele.vance", "Retail Manager", "Retail", True, False),
    ("100064094363102", "Alex Wilber", "alex.wilber", "Marketing Assistant", "Marketing", True,
     False),
    ("100064094363103", "Diego Siciliani", "diego.siciliani", "HR Manager", "HR", True, True),
    ("100064094363104", "Isaiah Langer", "isaiah.langer", "Sales Rep", "Sales", True, False),
    ("100064094363105", "Johanna Lorenz", "johanna.lorenz", "Senior Engineer", "Engineering", True,
     False),
    ("100064094363106", "Lynne Robbins", "lynne.robbins", "Planner", "Retail", True, False),
    ("100064094363107", "Pradeep Gupta", "pradeep.gupta", "Accountant", "Finance", False, False),
]  # fmt: skip
_SEED_INVITED = 1_609_459_200  # 2021-01-01T00:00:00Z


def _seed_members() -> list[SimMember]:
    members = []
    for i, (member_id, name, local, title, department, active, admin) in enumerate(_SEED_MEMBERS):
        invited = _SEED_INVITED + i * 86_400
        members.append(
            SimMember(member_id, name, f"{local}@contoso.com", title, department, active, admin,
                      account_invite_time=invited, account_claim_time=invited + 3_600)
        )  # fmt: skip
    return members


def _seed_groups() -> list[SimGroup]:
    # Everyone's company group, the admins' group, and the group MDCA suggests for excluding
    # frequent travellers from location alerts.
    people = [row[0] for row in _SEED_MEMBERS]
    return [
        SimGroup("1564880947340001", "All Contoso", "OPEN", "Everyone at Contoso", people),
        SimGroup("1564880947340002", "IT Admins", "SECRET", "", [people[0], people[3]]),
        SimGroup("1564880947340003", "Frequent Travellers", "CLOSED", "", [people[2], people[5]]),
    ]


class SimulatedWorkplace(Simulator):
    """A Workplace community with one third-party app, served on a local port.

    Use as a context manager or call `start()`/`stop()`. All state is guarded by one lock, so
    tests may read it while the server thread answers requests.
    """

    name = "sim-workplace"
    community_id, company_id, community_name = "504942443827307", "504942447160640", "Contoso"

    def __init__(
        self, *, app_id: str, app_secret: str, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.app_id, self.app_secret, self.clock = app_id, app_secret, clock
        self.app_permissions: tuple[str, ...] = DEFAULT_APP_PERMISSIONS
        # When set, Graph answers carry them as X-App-Usage (percentages, workplace-api.md §10)
        # and X-Business-Use-Case-Usage ({"<id>": [{...}]}).
        self.app_usage: dict[str, int] | None = None
        self.business_usage: dict[str, list[dict[str, int | str]]] | None = None
        # Workplace's end (see `shut_down`); scripted failures are in `faults` (see `fail`).
        self.is_shut_down = False
        self.members: list[SimMember] = _seed_members()
        self.groups: list[SimGroup] = _seed_groups()
        self.install_codes: dict[str, InstallCode] = {}
        self.issued_tokens: dict[str, SimInstall] = {}
        self.installs: list[SimInstall] = []
        self._deliveries: list[Delivery] = []

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:54321" (the Graph host and the dialog host)."""
        return f"http://{self.host}:{self.port}"

    @property
    def dialog_url(self) -> str:
        return self.url + "/dialog/work/app_install/"

    # -- state for tests ---------------------------------------------------------------------

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        """Requests whose version-less path is `endpoint`, e.g. "/community/members"."""
        wanted = endpoint.rstrip("/") or "/"
        return [r for r in self.requests if (r.endpoint.rstrip("/") or "/") == wanted]

    @property
    def deliveries(self) -> list[Delivery]:
        """A snapshot of the webhooks sent by `deliver`."""
        with self._lock:
            return list(self._deliveries)

    def add_member(
        self, name: str, email: str, *, member_id: str | None = None, **attributes: Any
    ) -> SimMember:
        """Add a person (invited and claimed now) to the community and return it; `attributes`
        are further `SimMember` fields, e.g. `title="Planner", admin=True`."""
        with self._lock:
            taken = {m.id for m in self.members}
            if member_id in taken:
                raise ValueError(f"member id {member_id} already exists in the community")
            now = int(self.clock())
            member = SimMember(member_id or _random_digits(15, taken), name, email, **attributes)
            member.account_invite_time = member.account_claim_time = now
            self.members.append(member)
            return member

    def member(self, id_or_email: str) -> SimMember:
        """The member with this id or e-mail (case-insensitive); KeyError if none."""
        if (found := self._find_member(id_or_email)) is None:
            raise KeyError(f"no member {id_or_email!r} in the simulated community")
        return found

    def _find_member(self, id_or_email: str) -> SimMember | None:
        with self._lock:
            wanted = id_or_email.lower()
            return next((m for m in self.members if wanted in (m.id, m.email.lower())), None)

    def add_group(
        self, name: str, members: Sequence[str] = (), *, group_id: str | None = None
    ) -> SimGroup:
        """Add a group whose members are these people (ids or e-mails) and return it."""
        with self._lock:
            taken = {g.id for g in self.groups} | {m.id for m in self.members}
            if group_id in taken:
                raise ValueError(f"id {group_id} is already used in the community")
            group_id = group_id or _random_digits(16, taken)
            group = SimGroup(group_id, name, member_ids=[self.member(m).id for m in members])
            self.groups.append(group)
            return group

    def group(self, id_or_name: str) -> SimGroup:
        """The group with this id or name (case-insensitive); KeyError if none."""
        with self._lock:
            for g in self.groups:
                if g.id == id_or_name or g.name.lower() == id_or_name.lower():
                    return g
        raise KeyError(f"no group {id_or_name!r} in the simulated community")

    def issue_install_code(self, redirect_uri: str, *, state: str | None = None) -> str:
        """Issue a one-time install code, as the Workplace-initiated install (§3, entry 1) does."""
        code = "AQ" + "".join(secrets.choice(_TOKEN_ALPHABET + "-_") for _ in range(254))
        with self._lock:
            self.install_codes[code] = InstallCode(redirect_uri, self.clock(), state)
        return code

    def add_custom_integration(self, *, require_proof: bool = False) -> str:
        """Create a custom integration and return its token (appsecret_proof is its toggle)."""
        token = _new_token()
        with self._lock:
            self.issued_tokens[token] = SimInstall(None, token, self.app_permissions, require_proof)
        return token

    def fail(
        self,
        endpoint: str = "",
        *,
        status: int,
        code: int | None = None,
        subcode: int | None = None,
        retry_after: int | str | None = None,
        times: int = 1,
    ) -> Fault:
        """Make the next `times` Graph calls to `endpoint` (a path prefix) fail this way.

        E.g. `fail("/community/members", status=429, retry_after=2)` or
        `fail(status=400, code=613)`; an HTTP 5xx without a code answers Graph's code 2, any
        other status without a code an empty body.
        """
        if code is None and status >= 500:
            code = 2
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        message = _FAULT_MESSAGES.get(code or 0, "Simulated fault")
        return self.faults.add(
            Fault("*", _prefix(endpoint), status, headers, times=times, code=code, subcode=subcode,
                  message=message)
        )  # fmt: skip

    def slow(self, endpoint: str = "", *, seconds: float, times: int = 1) -> Fault:
        """Make the next `times` calls to `endpoint` answer only after `seconds` (then as usual).

        The request is recorded when it arrives (status 0 until answered), so a caller that gave
        up can still count it; `stop()` ends any wait.
        """
        return self.faults.add(Fault("*", _prefix(endpoint), 0, delay=seconds, times=times))

    def shut_down(self) -> None:
        """Workplace's end (June 2026): every Graph call answers 404 with a plain page."""
        with self._lock:
            self.is_shut_down = True

    def uninstall(self, install_id: str | None = None) -> None:
        """Uninstall one install (or all): its token then fails with 190/458."""
        with self._lock:
            for install in self.installs:
                if install_id is None or install.id == install_id:
                    install.uninstalled = True

    # -- webhooks and uninstall callbacks ----------------------------------------------------

    def deliver(
        self,
        webhook_url: str,
        envelope: dict[str, Any] | bytes,
        *,
        signature: Literal["both", "none", "bad"] = "both",
    ) -> ClientResponse:
        """POST a webhook the way Workplace does and return the receiver's response.

        It signs with SHA-256 and SHA-1 headers; "bad" signs with a wrong key, "none" not at all.
        """
        body = envelope if isinstance(envelope, bytes) else _graph_json(envelope)
        key = secrets.token_bytes(32) if signature == "bad" else self.app_secret.encode()
        headers = {"Content-Type": "application/json", "User-Agent": WEBHOOK_USER_AGENT}
        if signature != "none":
            headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(key, body, "sha256").hexdigest()
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(key, body, "sha1").hexdigest()
        response = requests.post(
            webhook_url, data=body, headers=headers, timeout=5, allow_redirects=False
        )
        with self._lock:
            self._deliveries.append(Delivery(webhook_url, body, headers, response.status_code))
        return response

    def security_envelope(
        self, changes: Sequence[tuple[str, dict[str, Any]]], *, entry_time: int | None = None
    ) -> dict[str, Any]:
        """A `workplace_security` webhook body with one entry (keyed by the company id, §6.3)."""
        entry = {
            "id": self.company_id,
            "time": int(self.clock()) if entry_time is None else entry_time,
            "changes": [{"field": f, "value": v} for f, v in changes],
        }
        return {"object": "workplace_security", "entry": [entry]}

    def change(
        self,
        event: str,
        *,
        field: str | None = None,
        actor: SimMember,
        target: SimMember | None = None,
        ip: str,
        ip_country: str,
        timestamp: datetime,
        **extra: Any,
    ) -> tuple[str, dict[str, Any]]:
        """(field, value) of one security change: the field from EVENT_FIELDS unless given, the
        value with exactly the attested fields plus `extra`."""
        if field is None and event not in EVENT_FIELDS:
            raise KeyError(f"{event!r} is not in EVENT_FIELDS: pass field= for unknown events")
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
        target = actor if target is None else target
        return field or EVENT_FIELDS[event], {
            "actor_community_id": self.community_id,
            "actor_scim_company_id": self.company_id,
            "actor_id": actor.id,
            "actor_email": actor.email,
            "target_id": target.id,
            "target_email": target.email,
            "ip": ip,
            "timestamp": timestamp.astimezone(UTC).strftime(_GRAPH_TIME),
            "event": event,
            "browser_name": "Firefox",
            "browser_os": "Mac OS X 10.15",
            "ip_country": ip_country,
            "useragent": FIREFOX_USERAGENT,
            "target_community_id": self.community_id,
            "target_company_id": self.company_id,
            **extra,
        }

    def uninstall_signed_request(self, *, encoding: Literal["hex", "raw"] = "hex") -> str:
        """A deauthorization `signed_request` for this community (§5), signed like Meta's apps.

        "hex" signs with the hex digest's bytes (Meta's reference app), "raw" with the raw digest.
        """
        payload = {
            "algorithm": "HMAC-SHA256",
            "community_id": self.community_id,
            "issued_at": int(self.clock()),
        }
        payload_segment = _b64url(json.dumps(payload, separators=(",", ":")).encode())
        mac = hmac.new(self.app_secret.encode(), payload_segment.encode("ascii"), hashlib.sha256)
        sig = mac.hexdigest().encode("ascii") if encoding == "hex" else mac.digest()
        return f"{_b64url(sig)}.{payload_segment}"

    def deliver_uninstall(
        self, deauthorize_url: str, *, encoding: Literal["hex", "raw"] = "hex"
    ) -> ClientResponse:
        """POST `signed_request=` to the Deauthorization Callback URL, as Workplace does."""
        return requests.post(
            deauthorize_url,
            data={"signed_request": self.uninstall_signed_request(encoding=encoding)},
            headers={"User-Agent": WEBHOOK_USER_AGENT},
            timeout=5,
            allow_redirects=False,
        )

    # -- HTTP serving ------------------------------------------------------------------------

    def _record(self, request: Request) -> RecordedRequest:
        record = super()._record(request)
        lists = {
            k: ["<redacted>"] * len(v) if k in _SECRET_PARAMS else v
            for k, v in _params(request).items()
        }
        record.query_lists, record.query = lists, {k: v[-1] for k, v in lists.items() if v}
        if "authorization" in record.headers:
            record.headers["authorization"] = "<redacted>"
        if record.body and record.headers.get("content-type", "").startswith(_FORM):
            form = parse_qs(record.body.decode("utf-8", "replace"), keep_blank_values=True)
            pairs = [(k, "<redacted>" if k in _SECRET_PARAMS else v) for k in form for v in form[k]]
            record.body = urlencode(pairs).encode()
        record.endpoint = _VERSION_PREFIX.sub("", record.path) or "/"
        return record

    def _answer(self, request: Request, record: RecordedRequest) -> Response:
        req = _Incoming(
            request.method,
            record.path,
            urlsplit(raw_target(request)).query,
            record.endpoint.rstrip("/") or "/",
            _params(request),
            {k.lower(): v for k, v in request.headers.items()},
        )
        try:
            if req.endpoint == "/dialog/work/app_install":
                return self._install_dialog(req)
            if scripted := self._scripted(req):
                return scripted
            if req.endpoint == "/oauth/access_token":
                return self._json_reply(self._exchange_code(req))
            return self._json_reply(self._graph(req))
        except _GraphError as error:
            return self._error_reply(error)
        except _DialogError as error:
            return _html(400, f"<h1>Sorry, something went wrong.</h1><p>{html.escape(str(error))}")

    def _crash(self) -> Response:
        return self._error_reply(_GraphError("An unknown error has occurred.", 1, status=500))

    def _scripted(self, req: _Incoming) -> Response | None:
        """Workplace's end or a scripted fault, if one applies to this request."""
        if self.is_shut_down:
            return _html(404, "Workplace from Meta is no longer available.")
        fault = self.faults.take(req.method, req.endpoint)
        if fault is None or fault.status == 0:
            return None
        if fault.code is None:
            reply = Response(b"", fault.status, mimetype="text/plain")
        else:
            error = _GraphError(fault.message, fault.code, fault.subcode, status=fault.status)
            reply = self._error_reply(error)
        reply.headers.extend(fault.headers)
        return reply

    def _json_reply(self, payload: Any, status: int = 200) -> Response:
        reply = Response(
            _graph_json(payload), status, content_type="application/json; charset=UTF-8"
        )
        reply.headers["facebook-api-version"] = GRAPH_API_VERSION
        reply.headers["x-fb-trace-id"] = _fbtrace_id()
        with self._lock:
            usages = [
                ("X-App-Usage", self.app_usage),
                ("X-Business-Use-Case-Usage", self.business_usage),
            ]
        for header, usage in usages:
            if usage is not None:
                reply.headers[header] = json.dumps(usage, separators=(",", ":"))
        return reply

    def _error_reply(self, error: _GraphError) -> Response:
        body = {"message": error.message, "type": error.error_type, "code": error.code}
        if error.subcode is not None:
            body["error_subcode"] = error.subcode
        body["fbtrace_id"] = _fbtrace_id()
        reply = self._json_reply({"error": body}, error.status)
        if error.challenge is not None:
            quoted = error.message.replace('"', "'")
            challenge = f'OAuth "Facebook Platform" "{error.challenge}" "{quoted}"'
            reply.headers["WWW-Authenticate"] = challenge
        return reply

    # -- install dialog and code exchange ----------------------------------------------------

    def _install_dialog(self, req: _Incoming) -> Response:
        app_id, redirect_uri = req.last("app_id"), req.last("redirect_uri")
        target = urlsplit(redirect_uri or "")
        if req.method != "GET":
            raise _DialogError("The install dialog only answers GET requests.")
        if not app_id:
            raise _DialogError("Missing app_id: the install dialog needs the app's id.")
        if app_id != self.app_id:
            raise _DialogError(f"Invalid App ID: {app_id} is not a Workplace app.")
        if not redirect_uri:
            raise _DialogError("Missing redirect_uri: the install dialog needs the Redirect URL.")
        if target.scheme not in ("http", "https") or not target.netloc:
            raise _DialogError(f"The redirect_uri must be an absolute URL: {redirect_uri}")
        state = req.last("state")
        answer = {"code": self.issue_install_code(redirect_uri, state=state)}
        if state is not None:
            answer["state"] = state
        return Response(status=302, headers={"Location": _with_query(redirect_uri, answer)})

    def _exchange_code(self, req: _Incoming) -> dict[str, Any]:
        # Error codes follow Graph's OAuth endpoint: 101 for the app id, 1 for the secret and a
        # missing code, 191 for a missing redirect_uri, and 100 for everything wrong with the code
        # itself, told apart by subcode: 36007 expired, 36008 redirect_uri differs from the
        # dialog's, 36009 already used (an unknown code has no subcode).
        if req.method not in ("GET", "POST"):
            raise _unsupported(req.method, "oauth")
        if "client_secret" in parse_qs(req.query):
            # Graph would accept it; the simulator refuses, so no caller puts the app secret in a
            # URL (where logs and telemetry keep it) and passes its tests.
            raise _GraphError(
                "Simulator: client_secret in the query string. Send the code exchange as a POST "
                "with the parameters in an application/x-www-form-urlencoded body.",
                100,
            )
        client_id, redirect_uri, code = (req.last(p) for p in ("client_id", "redirect_uri", "code"))
        if not client_id:
            raise _GraphError("Missing client_id parameter.", 101)
        if client_id != self.app_id:
            raise _GraphError("Error validating application. Invalid application ID.", 101)
        client_secret = req.last("client_secret") or ""
        if not hmac.compare_digest(client_secret.encode(), self.app_secret.encode()):
            raise _GraphError("Error validating client secret.", 1)
        if not redirect_uri:
            raise _GraphError("Missing redirect_uri parameter.", 191)
        if not code:
            raise _GraphError("Missing authorization code", 1)
        with self._lock:
            issued = self.install_codes.get(code)
            if issued is None:
                raise _code_error("Invalid verification code format.")
            if issued.used:
                raise _code_error("This authorization code has been used.", 36009)
            if self.clock() - issued.issued_at > CODE_TTL_SECONDS:
                raise _code_error("This authorization code has expired.", 36007)
            if redirect_uri != issued.redirect_uri:
                raise _code_error(
                    "Error validating verification code. Please make sure your redirect_uri is "
                    "identical to the one you used in the OAuth dialog request",
                    36008,
                )
            issued.used = True
            install = SimInstall(_random_digits(16), _new_token(), self.app_permissions)
            self.installs.append(install)
            self.issued_tokens[install.token] = install
        return {"access_token": install.token, "token_type": "bearer"}

    # -- Graph nodes and edges ---------------------------------------------------------------

    def _authenticate(self, req: _Incoming) -> SimInstall:
        if "access_token" in parse_qs(req.query):
            # Graph would accept it; the simulator refuses, as for client_secret.
            raise _GraphError(
                "Simulator: access_token in the query string. Send it in the Authorization header.",
                100,
            )
        scheme, _, credentials = req.headers.get("authorization", "").strip().partition(" ")
        token = credentials.strip() if scheme.lower() in ("bearer", "oauth") else ""
        if not token:
            raise _GraphError(
                "An access token is required to request this resource.",
                104,
                challenge="invalid_request",
            )
        with self._lock:
            issued = self.issued_tokens.get(token)
        if issued is None:
            raise _GraphError("Invalid OAuth access token.", 190, challenge="invalid_token")
        if issued.uninstalled:
            raise _GraphError(
                f"Error validating access token: The user has not authorized application "
                f"{self.app_id}.",
                190,
                458,
                challenge="invalid_token",
            )
        proof, proof_time = req.last("appsecret_proof"), req.last("appsecret_time")
        if proof is not None or proof_time is not None or issued.require_proof:
            self._check_proof(token, proof, proof_time)
        return issued

    def _check_proof(self, token: str, proof: str | None, proof_time: str | None) -> None:
        if not proof:
            raise _proof_error("API calls from the server require an appsecret_proof argument")
        # Only time-stamped proofs are accepted (workplace-api.md §4): without appsecret_time a
        # proof never expires.
        if not proof_time or not proof_time.isdigit():
            raise _proof_error(
                "Invalid appsecret_time provided in the API argument: an integer Unix time is "
                "required with appsecret_proof"
            )
        age = self.clock() - int(proof_time)
        if age > PROOF_MAX_AGE_SECONDS or age < -PROOF_MAX_FUTURE_SECONDS:
            raise _proof_error(
                "Invalid appsecret_time provided in the API argument: it must be within "
                f"{PROOF_MAX_AGE_SECONDS} seconds of the current time"
            )
        expected = hmac.new(
            self.app_secret.encode(), f"{token}|{proof_time}".encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected.encode(), proof.encode()):
            raise _proof_error("Invalid appsecret_proof provided in the API argument")

    def _graph(self, req: _Incoming) -> dict[str, Any]:
        caller = self._authenticate(req)
        segments = [s for s in req.endpoint.split("/") if s]
        node = segments[0] if segments else ""
        if req.method == "POST":
            return self._account_action(req, segments)
        if req.method != "GET":
            raise _unsupported(req.method, node)
        requested = _parse_fields(req.last("fields") or "id,name")
        with self._lock:
            group = next((g for g in self.groups if g.id == node), None)
            match segments:
                case [_] if node in ("community", "company", self.community_id):
                    return _select(self._community_values(caller), requested, "Community")
                case [_, edge] if node in ("community", "company", self.community_id):
                    return self._community_edge(req, caller, edge, requested)
                case [_, "members"] if group is not None:
                    self._check_group_permission(caller, f"/{group.id}/members")
                    by_id = {m.id: m for m in self.members if m.active}
                    rows = [_member_values(by_id[i]) for i in group.member_ids if i in by_id]
                    return self._paged(req, f"group{group.id}", rows, requested, "User")
                case [_] if (person := self._find_member(node)) is not None:
                    return _select(_member_values(person), requested, "User")
        raise _unsupported(req.method, node)

    def _community_edge(
        self, req: _Incoming, caller: SimInstall, edge: str, requested: list[str]
    ) -> dict[str, Any]:
        if edge == "groups":
            self._check_group_permission(caller, "/community/groups")
            rows = [vars(g) | {"archived": False} for g in self.groups]
            return self._paged(req, edge, rows, requested, "Group")
        if edge not in _MEMBER_EDGES:
            raise _no_field(edge, "Community")
        if edge == "admins" and "MANAGE_ACCOUNTS" not in caller.permissions:
            raise _no_permission("/community/admins", "the Manage Accounts permission")
        rows = [_member_values(m) for m in self.members if _MEMBER_EDGES[edge](m)]
        return self._paged(req, edge, rows, requested, "User")

    def _account_action(self, req: _Incoming, segments: list[str]) -> dict[str, Any]:
        """`POST /{id}/logout` and `POST /{id}?active=false|true` (workplace-api.md §8.1)."""
        node, active = segments[0] if segments else "", req.last("active")
        with self._lock:
            person = self._find_member(node)
            if person is not None and segments[1:] == ["logout"]:
                person.logouts += 1
            elif person is not None and len(segments) == 1 and active in ("true", "false"):
                person.active = active == "true"
            else:
                raise _unsupported(req.method, node)
        return {"success": True}

    def _community_values(self, caller: SimInstall) -> dict[str, Any]:
        values: dict[str, Any] = {"id": self.community_id, "name": self.community_name}
        # A custom integration is not an install, so its answer has no `install` (Graph omits
        # what is unset).
        if caller.id is not None:
            values["install"] = {
                "id": caller.id,
                "permissions": list(caller.permissions),
                "install_type": "COMMUNITY",
            }
        return values

    def _check_group_permission(self, caller: SimInstall, what: str) -> None:
        if not _GROUP_PERMISSIONS & set(caller.permissions):
            raise _no_permission(what, "the Read group content or Manage groups permission")

    def _paged(
        self,
        req: _Incoming,
        edge: str,
        rows: list[dict[str, Any]],
        requested: list[str],
        node_type: str,
    ) -> dict[str, Any]:
        """One page of an edge's rows with the requested fields (checked even on an empty edge),
        with Graph's cursors and a `next` link (callers read forward only)."""
        _check_fields(requested, node_type)
        limit_text = req.last("limit") or str(DEFAULT_PAGE_LIMIT)
        if not limit_text.isdigit() or int(limit_text) < 1:
            raise _GraphError(
                f"(#100) Param limit must be a positive integer, got {limit_text!r}", 100
            )
        limit = int(limit_text)
        after = req.last("after")
        start = 0 if after is None else _cursor_index(after, edge) + 1
        page = [_select(row, requested, node_type) for row in rows[start : start + limit]]
        if not page:
            return {"data": []}
        first, last = _cursor(edge, start), _cursor(edge, start + len(page) - 1)
        paging: dict[str, Any] = {"cursors": {"before": first, "after": last}}
        if start + len(page) < len(rows):
            # The proof is per request (and expires), so it is left out: the client adds its own.
            dropped = {"after", "limit", "appsecret_proof", "appsecret_time"}
            params = {k: v for k, v in req.params.items() if k not in dropped}
            params |= {"limit": [str(limit)], "after": [last]}
            paging["next"] = f"{self.url}{req.path}?{urlencode(params, doseq=True)}"
        return {"data": page, "paging": paging}


def _prefix(endpoint: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(endpoint.rstrip("/")))


def _fbtrace_id() -> str:
    return secrets.token_urlsafe(17)[:23]
