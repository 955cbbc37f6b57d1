"""The activity policies' filter language: MDCA's fields and operators, compiled to predicates.

A policy's `filters` is a mapping of field -> {operator: values}; every filter must hold. Fields
are MDCA's API names where one exists (`activity.eventType`, `ip.category`, ...), read from an
activity and its IP's intelligence; operators are MDCA's (`eq`, `neq`, `isset`, `contains`,
`range`, ...), case-insensitive on text. Errors name the policy and the field (`where`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from shared.config import ConfigError
from shared.ipintel import IpInfo
from shared.ipintel.ranges import category_name
from shared.models import Activity

# Filter fields (MDCA API names where one exists) -> how to read them from an activity.
Getter = Callable[[Activity, IpInfo], Any]
FIELDS: dict[str, Getter] = {
    "source": lambda a, i: a.source,
    "activity.type": lambda a, i: a.type,
    "activity.eventType": lambda a, i: a.event_name,
    "action_type": lambda a, i: a.event_name,
    "activity.category": lambda a, i: a.category,
    "activity.outcome": lambda a, i: a.outcome,
    "activity.impersonated": lambda a, i: a.impersonated,
    "activity.administrative": lambda a, i: a.administrative,
    "activity.interactive": lambda a, i: a.interactive,
    "user.username": lambda a, i: a.actor_email,
    "user.id": lambda a, i: a.actor_id,
    "user.domain": lambda a, i: a.actor_email.rpartition("@")[2] if "@" in a.actor_email else "",
    "target.username": lambda a, i: a.target_email,
    "userAgent.userAgent": lambda a, i: a.user_agent,
    "ip.address": lambda a, i: a.ip,
    "ip.category": lambda a, i: i.category,
    "ip.tags": lambda a, i: list(i.tags),
    "location.country": lambda a, i: i.country,
    "location.organizations": lambda a, i: i.isp,
}
OPERATORS = (
    "eq",
    "neq",
    "isset",
    "isnotset",
    "contains",
    "ncontains",
    "startswith",
    "doesnotstartwith",
    "endswith",
    "range",
)

Predicate = Callable[[Activity, IpInfo], bool]


def _norm(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v


def compile_filter(name: str, op: str, arg: Any, where: str) -> Predicate:
    """One `field: {op: values}` filter as a predicate; `where` names it in errors."""
    get = FIELDS[name]
    if op in ("isset", "isnotset"):
        if not isinstance(arg, bool):
            raise ConfigError(f"{where}: `{op}` takes true or false")
        want = arg if op == "isset" else not arg
        return lambda a, i: (get(a, i) not in ("", None, [])) == want
    values = arg if isinstance(arg, list) else [arg]
    if not values:
        raise ConfigError(f"{where}: `{op}` needs at least one value")
    if name == "ip.category":
        cats = [category_name(v) for v in values]
        if None in cats:
            raise ConfigError(
                f"{where}: unknown IP category in {values} (Corporate, Administrative, Risky, "
                "VPN, Cloud provider, or 1-5)"
            )
        values = cats
    if op == "range":
        try:
            nets = [ipaddress.ip_network(str(v), strict=False) for v in values]
        except ValueError:
            raise ConfigError(f"{where}: `range` takes CIDRs, got {values}") from None

        def in_range(a: Activity, i: IpInfo) -> bool:
            try:
                addr = ipaddress.ip_address(str(get(a, i)))
            except ValueError:
                return False
            return any(addr.version == n.version and addr in n for n in nets)

        return in_range
    wanted = [_norm(v) for v in values]

    def read(a: Activity, i: IpInfo) -> list[Any]:
        v = get(a, i)
        return [_norm(x) for x in v] if isinstance(v, list) else [_norm(v)]

    if op in ("eq", "neq"):
        wanted_set = frozenset(wanted)

        def equal(a: Activity, i: IpInfo) -> bool:
            v = get(a, i)
            if isinstance(v, list):
                return any(_norm(x) in wanted_set for x in v)
            return _norm(v) in wanted_set

        if op == "eq":
            return equal
        # MDCA: neq keeps events that lack the attribute (pair it with isset)
        return lambda a, i: not equal(a, i)
    text = [str(w) for w in wanted]
    tests: dict[str, Callable[[str], bool]] = {
        "contains": lambda s: any(w in s for w in text),
        "ncontains": lambda s: not any(w in s for w in text),
        "startswith": lambda s: any(s.startswith(w) for w in text),
        "doesnotstartwith": lambda s: not any(s.startswith(w) for w in text),
        "endswith": lambda s: any(s.endswith(w) for w in text),
    }
    test = tests[op]
    return lambda a, i: any(test(str(v)) for v in read(a, i))


def compile_filters(raw: Any, where: str) -> tuple[Predicate, ...]:
    """A policy's `filters` mapping, validated, as predicates that must all hold."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}, field `filters`: expected a mapping of field -> operator")
    out: list[Predicate] = []
    for name, ops in raw.items():
        at = f"{where}, field `filters.{name}`"
        if name not in FIELDS:
            raise ConfigError(f"{at}: unknown field (known: {', '.join(sorted(FIELDS))})")
        if not isinstance(ops, dict) or not ops:
            raise ConfigError(f"{at}: expected a mapping of operator -> values, e.g. {{eq: [x]}}")
        for op, arg in ops.items():
            if op not in OPERATORS:
                raise ConfigError(f"{at}: unknown operator {op!r} (known: {', '.join(OPERATORS)})")
            out.append(compile_filter(name, op, arg, f"{where}, field `filters.{name}.{op}`"))
    return tuple(out)


def allowed_types(raw: Any) -> frozenset[str] | None:
    """The activity types an `activity.type` eq filter allows: lets the engine skip the rest."""
    ops = raw.get("activity.type") if isinstance(raw, dict) else None
    if isinstance(ops, dict) and "eq" in ops:
        values = ops["eq"] if isinstance(ops["eq"], list) else [ops["eq"]]
        return frozenset(str(v).lower() for v in values)
    return None
