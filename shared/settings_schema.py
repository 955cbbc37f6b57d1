"""How a setting is declared and read: the `Setting` declaration, its parser, the README table.

A feature's settings are a frozen dataclass (a group, declared in `shared/config.py`) whose
fields are annotated `Annotated[<type>, Setting(...)]`: the field's type says how the text is
parsed (str, int, bool, date, a Literal's choices, a comma-separated tuple or frozenset), the
declaration gives the environment name, the default, whether it is a secret, the documentation
and any bounds. Parsing, validation, the errors that name the setting and the README's
configuration table all come from that one declaration. This module reads no environment: the
caller passes the mapping in.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import date
from typing import Any, Literal, Union

# App Service leaves a Key Vault reference it could not resolve in the setting as written
# (learn.microsoft.com/azure/app-service/app-service-key-vault-references, "Troubleshoot").
KEY_VAULT_REFERENCE = "@microsoft.keyvault("


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it and says how to fix it."""


@dataclass(frozen=True)
class Setting:
    """One setting as the environment spells it; the field it fills gives its type."""

    name: str
    default: str | None  # as it would be written in the environment; None: no default
    doc: str  # the README's "What it is"
    secret: bool = False  # never shown in an error; a Key Vault reference in Azure
    minimum: int | None = None  # integers: at least this (default 1)
    maximum: int | None = None  # integers: at most this
    url: bool = False  # a base URL: a trailing / is dropped
    choices: tuple[str, ...] = ()  # lists: each item one of these, and at least one item
    actions: bool = False  # lists of governance action names, checked against the caller's
    check: Callable[[str], bool] | None = None  # text: must hold, else `must be <check_doc>`
    check_doc: str = ""
    shown_default: str | None = None  # the README's Default cell, when the default is implicit

    def shown(self, value: object) -> str:
        """The value as an error may quote it: never a secret's."""
        return "a value that is not shown (secret)" if self.secret else repr(value)


@dataclass(frozen=True)
class Declared:
    """A declaration with the field it fills and the group (feature) that reads it."""

    setting: Setting
    attr: str
    kind: Any  # the field's type, without Annotated
    feature: str


def is_unresolved_reference(value: str | None) -> bool:
    """A Key Vault reference App Service did not resolve: the literal `@Microsoft.KeyVault(...)`."""
    return value is not None and value.strip().lower().startswith(KEY_VAULT_REFERENCE)


def declarations(group: type, feature: str = "") -> Iterator[Declared]:
    """Each field of a settings dataclass declared with `Annotated[..., Setting(...)]`."""
    hints = typing.get_type_hints(group, include_extras=True)
    for f in fields(group):
        hint = hints[f.name]
        if typing.get_origin(hint) is not typing.Annotated:
            continue
        kind, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, Setting):
                yield Declared(extra, f.name, kind, feature or _feature(group))


def _feature(group: type) -> str:
    return str(getattr(group, "FEATURE", group.__name__))


def text(env: Mapping[str, str], s: Setting) -> str | None:
    """The setting's text: set and non-blank, else its default; a secret's unresolved Key Vault
    reference reads as unset (never the reference string, nor a default in the secret's place)."""
    value = env.get(s.name)
    if s.secret and is_unresolved_reference(value):
        return None
    if value is None or value.strip() == "":
        return s.default
    return value.strip()


def unresolved(env: Mapping[str, str], declared: Collection[Declared]) -> frozenset[str]:
    """The secret settings among `declared` whose value is an unresolved Key Vault reference."""
    return frozenset(
        d.setting.name
        for d in declared
        if d.setting.secret and is_unresolved_reference(env.get(d.setting.name))
    )


def parse(d: Declared, env: Mapping[str, str], actions: Collection[str] | None = None) -> Any:
    """The field's value from the environment, or a ConfigError naming the setting."""
    s, raw = d.setting, text(env, d.setting)
    kind, optional = _unwrap_optional(d.kind)
    if kind is str:
        value = (raw or "").rstrip("/") if s.url else (raw or "")
        if value and s.check is not None and not s.check(value):
            raise ConfigError(f"{s.name} must be {s.check_doc}, got {s.shown(value)}")
        return (value or None) if optional else value
    if kind is int:
        return _integer(s, raw)
    if kind is bool:
        flag = (raw or "").lower()
        if flag not in ("true", "false"):
            raise ConfigError(f"{s.name} must be true or false, got {s.shown(flag)}")
        return flag == "true"
    if kind is date:
        try:
            return date.fromisoformat(raw or "")
        except ValueError:
            raise ConfigError(
                f"{s.name} must be an ISO date (YYYY-MM-DD), got {s.shown(raw or '')}"
            ) from None
    if typing.get_origin(kind) is Literal:
        choices = [str(c) for c in typing.get_args(kind)]
        if raw not in choices:
            raise ConfigError(f"{s.name} must be {_either(choices)}, got {s.shown(raw or '')}")
        return raw
    origin = typing.get_origin(kind)
    if origin is tuple:
        return _names(s, raw, actions)
    if origin is frozenset:
        return frozenset(item.lower() for item in _items(raw))
    raise TypeError(f"{s.name}: settings of type {kind!r} have no parser")


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    if typing.get_origin(kind) in (Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return kind, False


def _integer(s: Setting, raw: str | None) -> int:
    try:
        value = int(raw or "")
    except ValueError:
        raise ConfigError(f"{s.name} must be an integer, got {s.shown(raw or '')}") from None
    minimum = 1 if s.minimum is None else s.minimum
    if value < minimum:
        raise ConfigError(f"{s.name} must be at least {minimum}, got {s.shown(value)}")
    if s.maximum is not None and value > s.maximum:
        raise ConfigError(f"{s.name} must be at most {s.maximum}, got {s.shown(value)}")
    return value


def _items(raw: str | None) -> list[str]:
    return [item.strip() for item in (raw or "").split(",") if item.strip()]


def _names(s: Setting, raw: str | None, actions: Collection[str] | None) -> tuple[str, ...]:
    items = _items(raw)
    if s.choices:
        items = [item.lower() for item in items]
        if not items or any(item not in s.choices for item in items):
            raise ConfigError(
                f"{s.name} must list one or more of {', '.join(s.choices)}, got "
                f"{s.shown(raw or '')}"
            )
        return tuple(dict.fromkeys(items))
    if s.actions and actions is not None:
        for action in items:
            if action not in actions:
                raise ConfigError(
                    f"{s.name}: unknown action {action!r} (known: {', '.join(actions)})"
                )
    return tuple(items)


def _either(choices: list[str]) -> str:
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def require(
    name: str, value: str | None, purpose: str, unresolved: Collection[str] = frozenset()
) -> str:
    """A setting a feature cannot run without: its value, or an error that says how to set it."""
    if not value and name in unresolved:
        raise ConfigError(
            f"{name} is not set: it holds a Key Vault reference that App Service could not "
            f"resolve, and it is needed to {purpose}. Check that the secret exists and the app's "
            f"identity may read it, then refresh the references (README, Deploy)."
        )
    if not value:
        raise ConfigError(
            f"{name} is not set: it is needed to {purpose}. Add it to the Function App settings "
            f"(or to the environment / local.settings.json when running locally)."
        )
    return value


def markdown(declared: Collection[Declared]) -> str:
    """The README's configuration table: one block per feature, in declaration order."""
    lines: list[str] = []
    feature = None
    for d in declared:
        if d.feature != feature:
            feature = d.feature
            if lines:
                lines.append("")
            lines += [
                f"**{feature}**",
                "",
                "| Setting | Default | Secret | What it is |",
                "|---|---|---|---|",
            ]
        s = d.setting
        default = s.shown_default or (f"`{s.default}`" if s.default else "—")
        lines.append(f"| `{s.name}` | {default} | {'yes' if s.secret else 'no'} | {s.doc} |")
    return "\n".join(lines) + "\n"
