"""A small Bicep reader for the infrastructure tests: declarations, values and expressions.

The Bicep compiler cannot be installed where Vigil is developed (a .NET binary published on
GitHub and NuGet; PyPI, npm and Debian, the registries reachable there, do not ship it), so
tests/test_infra.py reads infra/ with this parser instead of matching text: every `param`,
`var`, `resource`, `module` and `output` with its decorators, condition and loop, and every
value as a tree (objects, arrays, strings with their interpolations, expressions).
`Evaluator` computes the values that depend only on parameters, variables and a few built-in
functions (`uniqueString`, `environment()` and the like), so a test can see the literal app
settings a deployment writes. It covers the Bicep that Vigil uses and fails loudly
(`BicepError`) on anything else. tests/test_infra.py also checks that pycep-parser, an
independent parser, reads the same declarations; CI compiles the same files with the real
compiler (.github/workflows/bicep.yml).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class BicepError(ValueError):
    """The file is not Bicep this reader understands (or not Bicep at all)."""


# --- syntax tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Member:
    target: Any
    name: str
    safe: bool = False  # `.?`


@dataclass(frozen=True)
class Index:
    target: Any
    index: Any


@dataclass(frozen=True)
class Call:
    name: str  # `az.resourceGroup` style namespaces are kept in the name
    args: tuple[Any, ...]


@dataclass(frozen=True)
class MethodCall:
    target: Any
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Any


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class Ternary:
    condition: Any
    then: Any
    otherwise: Any


@dataclass(frozen=True)
class Lambda:
    params: tuple[str, ...]
    body: Any


@dataclass(frozen=True)
class Interpolated:
    parts: tuple[Any, ...]  # str pieces and expressions


@dataclass(frozen=True)
class ForLoop:
    item: str
    index: str | None
    source: Any
    condition: Any | None
    body: Any


@dataclass(frozen=True)
class Obj:
    items: tuple[tuple[str, Any], ...]

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self.items:
            if k == key:
                return v
        return default

    def keys(self) -> list[str]:
        return [k for k, _ in self.items]


@dataclass(frozen=True)
class Arr:
    items: tuple[Any, ...]


@dataclass
class Decl:
    kind: str  # param, var, resource, module, output, targetScope, extension, ...
    name: str
    type: Any = None  # param/output type text; resource type; module path
    value: Any = None  # default (param) or value
    condition: Any = None  # `= if (condition) {...}`
    loop: ForLoop | None = None
    existing: bool = False
    decorators: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def body(self) -> Any:
        return self.loop.body if self.loop else self.value


# --- tokens -----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<nl>\n)
  | (?P<number>\d+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\?\?|\.\?|==|!=|=~|!~|<=|>=|&&|\|\||=>|[{}\[\]()\.,:?!=<>+\-*/%@|])
    """,
    re.X | re.S,
)


@dataclass(frozen=True)
class Tok:
    kind: str  # nl, number, ident, op, string
    text: str
    value: Any = None
    pos: int = 0


def _string(src: str, i: int) -> tuple[Any, int]:
    """A string literal at src[i] == "'": text, or Interpolated; returns the end position."""
    if src.startswith("'''", i):
        end = src.index("'''", i + 3)
        return src[i + 3 : end], end + 3
    parts: list[Any] = []
    buf: list[str] = []
    j = i + 1
    escapes = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", "$": "$"}
    while True:
        if j >= len(src):
            raise BicepError(f"unterminated string at {i}")
        c = src[j]
        if c == "'":
            break
        if c == "\\":
            buf.append(escapes.get(src[j + 1], src[j + 1]))
            j += 2
            continue
        if src.startswith("${", j):
            depth, k = 1, j + 2
            while depth:
                if src[k] == "'":
                    _, k = _string(src, k)
                    continue
                depth += {"{": 1, "}": -1}.get(src[k], 0)
                k += 1
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(Parser(src[j + 2 : k - 1]).expression_only())
            j = k
            continue
        buf.append(c)
        j += 1
    if buf or not parts:
        parts.append("".join(buf))
    if all(isinstance(p, str) for p in parts):
        return "".join(parts), j + 1
    return Interpolated(tuple(parts)), j + 1


def tokenize(src: str) -> list[Tok]:
    tokens: list[Tok] = []
    i = 0
    while i < len(src):
        if src[i] == "'":
            value, end = _string(src, i)
            tokens.append(Tok("string", src[i:end], value, i))
            i = end
            continue
        m = _TOKEN.match(src, i)
        if not m:
            raise BicepError(f"unexpected {src[i : i + 20]!r} at {i}")
        kind = m.lastgroup or ""
        if kind not in ("ws", "comment"):
            text = m.group()
            value = int(text) if kind == "number" else None
            tokens.append(Tok(kind, text, value, i))
        i = m.end()
    tokens.append(Tok("eof", "", None, len(src)))
    return tokens


# --- parser -----------------------------------------------------------------------------------

_CONTINUATION = {"?", ":", "&&", "||", "??", ".", ".?"}


class Parser:
    def __init__(self, src: str) -> None:
        self.toks = tokenize(src)
        self.i = 0

    # token helpers
    def peek(self, skip_nl: bool = False) -> Tok:
        j = self.i
        while skip_nl and self.toks[j].kind == "nl":
            j += 1
        return self.toks[j]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def skip_nl(self) -> None:
        while self.toks[self.i].kind == "nl":
            self.i += 1

    def expect(self, text: str) -> Tok:
        tok = self.next()
        if tok.text != text:
            raise BicepError(f"expected {text!r}, got {tok.text!r} at {tok.pos}")
        return tok

    def ident(self) -> str:
        tok = self.next()
        if tok.kind != "ident":
            raise BicepError(f"expected a name, got {tok.text!r} at {tok.pos}")
        return tok.text

    def continues(self) -> bool:
        """A newline followed by an operator continues the expression (multi-line ternaries)."""
        return self.peek().kind == "nl" and self.peek(skip_nl=True).text in _CONTINUATION

    # file
    def declarations(self) -> list[Decl]:
        decls: list[Decl] = []
        decorators: dict[str, tuple[Any, ...]] = {}
        while True:
            self.skip_nl()
            tok = self.peek()
            if tok.kind == "eof":
                return decls
            if tok.text == "@":
                self.next()
                name = self.ident()
                self.expect("(")
                decorators[name] = self.arguments()
                continue
            keyword = self.ident()
            decl = self.declaration(keyword)
            decl.decorators = decorators
            decorators = {}
            decls.append(decl)

    def declaration(self, keyword: str) -> Decl:
        if keyword == "targetScope":
            self.expect("=")
            return Decl("targetScope", "targetScope", value=self.expression())
        if keyword == "extension":
            return Decl("extension", self.ident())
        if keyword == "param":
            name = self.ident()
            type_ = self.type_text()
            value = None
            if self.peek().text == "=":
                self.next()
                value = self.expression()
            return Decl("param", name, type=type_, value=value)
        if keyword == "var":
            name = self.ident()
            self.expect("=")
            return Decl("var", name, value=self.expression())
        if keyword == "output":
            name = self.ident()
            type_ = self.type_text()
            self.expect("=")
            return Decl("output", name, type=type_, value=self.expression())
        if keyword in ("resource", "module"):
            name = self.ident()
            tok = self.next()
            if tok.kind != "string":
                raise BicepError(f"{keyword} {name}: expected its type or path")
            decl = Decl(keyword, name, type=tok.value)
            if self.peek().text == "existing":
                self.next()
                decl.existing = True
            self.expect("=")
            if self.peek().text == "if":
                self.next()
                self.expect("(")
                decl.condition = self.expression(skip=True)
                self.expect(")")
            value = self.expression()
            if isinstance(value, ForLoop):
                decl.loop = value
            else:
                decl.value = value
            return decl
        raise BicepError(f"unsupported declaration {keyword!r}")

    def type_text(self) -> str:
        parts = []
        while self.peek().kind not in ("nl", "eof") and self.peek().text != "=":
            parts.append(self.next().text)
        return "".join(parts)

    # expressions
    def expression_only(self) -> Any:
        value = self.expression(skip=True)
        self.skip_nl()
        if self.peek().kind != "eof":
            raise BicepError(f"unexpected {self.peek().text!r} in an interpolation")
        return value

    def expression(self, skip: bool = False) -> Any:
        """skip: newlines are insignificant (inside parentheses)."""
        if skip:
            self.skip_nl()
        condition = self.binary(0, skip)
        if skip or self.continues():
            self.skip_nl()
        if self.peek().text == "??":
            self.next()
            self.skip_nl()
            return Binary("??", condition, self.expression(skip))
        if self.peek().text != "?":
            return condition
        self.next()
        self.skip_nl()
        then = self.expression(skip=True) if skip else self.expression()
        self.skip_nl()
        self.expect(":")
        self.skip_nl()
        otherwise = self.expression(skip)
        return Ternary(condition, then, otherwise)

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("==", "!=", "=~", "!~"),
        ("<", ">", "<=", ">="),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def binary(self, level: int, skip: bool) -> Any:
        if level == len(self._LEVELS):
            return self.unary(skip)
        left = self.binary(level + 1, skip)
        while True:
            if skip or (self.continues() and self.peek(skip_nl=True).text in self._LEVELS[level]):
                self.skip_nl()
            op = self.peek().text
            if self.peek().kind != "op" or op not in self._LEVELS[level]:
                return left
            self.next()
            self.skip_nl()
            left = Binary(op, left, self.binary(level + 1, skip))

    def unary(self, skip: bool) -> Any:
        if self.peek().text in ("!", "-"):
            op = self.next().text
            return Unary(op, self.unary(skip))
        return self.postfix(self.primary(), skip)

    def postfix(self, value: Any, skip: bool) -> Any:
        while True:
            if (skip or self.continues()) and self.peek(skip_nl=True).text in (".", ".?"):
                self.skip_nl()
            tok = self.peek()
            if tok.text in (".", ".?"):
                self.next()
                name = self.ident()
                if self.peek().text == "(":
                    self.next()
                    value = MethodCall(value, name, self.arguments())
                else:
                    value = Member(value, name, tok.text == ".?")
            elif tok.text == "[":
                self.next()
                index = self.expression(skip=True)
                self.expect("]")
                value = Index(value, index)
            elif tok.text == "!" and self.toks[self.i + 1].text not in ("=",):
                self.next()  # non-null assertion
            else:
                return value

    def arguments(self) -> tuple[Any, ...]:
        args: list[Any] = []
        while True:
            self.skip_nl()
            if self.peek().text == ")":
                self.next()
                return tuple(args)
            args.append(self.expression(skip=True))
            self.skip_nl()
            if self.peek().text == ",":
                self.next()

    def primary(self) -> Any:
        tok = self.next()
        if tok.kind == "string":
            return tok.value
        if tok.kind == "number":
            return tok.value
        if tok.text == "(":
            if self.peek().kind == "ident" and self.toks[self.i + 1].text in (",", ")"):
                # a lambda with several parameters: (a, b) => ...
                params = []
                while self.peek().text != ")":
                    params.append(self.ident())
                    if self.peek().text == ",":
                        self.next()
                self.expect(")")
                self.expect("=>")
                return Lambda(tuple(params), self.expression(skip=True))
            value = self.expression(skip=True)
            self.expect(")")
            return value
        if tok.text == "{":
            return self.obj()
        if tok.text == "[":
            if self.peek(skip_nl=True).text == "for":
                return self.for_loop()
            return self.arr()
        if tok.kind == "ident":
            if tok.text in ("true", "false"):
                return tok.text == "true"
            if tok.text == "null":
                return None
            if self.peek().text == "=>":
                self.next()
                return Lambda((tok.text,), self.expression(skip=True))
            name = tok.text
            while (
                self.peek().text == "."
                and self.toks[self.i + 2].text == "("
                and name
                in (
                    "az",
                    "sys",
                )
            ):
                self.next()
                name += "." + self.ident()
            if self.peek().text == "(":
                self.next()
                return Call(name, self.arguments())
            return Ref(name)
        raise BicepError(f"unexpected {tok.text!r} at {tok.pos}")

    def separator(self, close: str) -> None:
        tok = self.peek()
        if tok.text == ",":
            self.next()
        elif tok.kind != "nl" and tok.text != close:
            raise BicepError(f"expected a new line or {close!r}, got {tok.text!r} at {tok.pos}")

    def obj(self) -> Obj:
        items: list[tuple[str, Any]] = []
        while True:
            self.skip_nl()
            tok = self.next()
            if tok.text == "}":
                return Obj(tuple(items))
            if tok.kind == "string" and isinstance(tok.value, str):
                key = tok.value
            elif tok.kind == "ident":
                key = tok.text
            else:
                raise BicepError(f"unexpected {tok.text!r} as an object key at {tok.pos}")
            if any(k == key for k, _ in items):
                raise BicepError(f"key {key!r} set twice at {tok.pos}")
            self.expect(":")
            items.append((key, self.expression()))
            self.separator("}")

    def arr(self) -> Arr:
        items: list[Any] = []
        while True:
            self.skip_nl()
            if self.peek().text == "]":
                self.next()
                return Arr(tuple(items))
            items.append(self.expression())
            self.separator("]")

    def for_loop(self) -> ForLoop:
        self.skip_nl()
        self.expect("for")
        index = None
        if self.peek().text == "(":
            self.next()
            item = self.ident()
            self.expect(",")
            index = self.ident()
            self.expect(")")
        else:
            item = self.ident()
        self.expect("in")
        source = self.expression(skip=True)
        self.expect(":")
        condition = None
        if self.peek().text == "if":
            self.next()
            self.expect("(")
            condition = self.expression(skip=True)
            self.expect(")")
        body = self.expression()
        self.skip_nl()
        self.expect("]")
        return ForLoop(item, index, source, condition, body)


@dataclass
class BicepFile:
    path: Path
    decls: list[Decl]

    @classmethod
    def read(cls, path: Path) -> BicepFile:
        return cls(path, Parser(path.read_text()).declarations())

    def of(self, kind: str) -> dict[str, Decl]:
        found: dict[str, Decl] = {}
        for d in self.decls:
            if d.kind == kind:
                if d.name in found:
                    raise BicepError(f"{self.path.name}: {kind} {d.name} declared twice")
                found[d.name] = d
        return found

    @property
    def params(self) -> dict[str, Decl]:
        return self.of("param")

    @property
    def vars(self) -> dict[str, Decl]:
        return self.of("var")

    @property
    def resources(self) -> dict[str, Decl]:
        return self.of("resource")

    @property
    def modules(self) -> dict[str, Decl]:
        return self.of("module")

    @property
    def outputs(self) -> dict[str, Decl]:
        return self.of("output")


def nodes(node: Any) -> Iterator[Any]:
    """The node and every node inside it."""
    yield node
    if isinstance(node, Obj):
        for _, value in node.items:
            yield from nodes(value)
    elif hasattr(node, "__dataclass_fields__"):
        for value in vars(node).values():
            for item in value if isinstance(value, tuple) else (value,):
                if not isinstance(item, str):
                    yield from nodes(item)


def refs(node: Any) -> set[str]:
    """Every name an expression refers to (variables, parameters, symbols)."""
    return {n.name for n in nodes(node) if isinstance(n, Ref)}


def path_of(node: Any) -> str | None:
    """`a.b.c` for a chain of member accesses on a name, else None."""
    if isinstance(node, Ref):
        return node.name
    if isinstance(node, Member):
        head = path_of(node.target)
        return f"{head}.{node.name}" if head else None
    return None


def members(node: Any) -> set[str]:
    """Every `a.b.c` path in an expression, as text."""
    return {p for n in nodes(node) if isinstance(n, Member) and (p := path_of(n))}


# --- evaluation -------------------------------------------------------------------------------


class Unknown(str):
    """A value only Azure knows at deployment time (a module output, a resource property)."""

    __slots__ = ()


def _unique_string(*args: str) -> str:
    digest = hashlib.sha256("|".join(args).encode()).hexdigest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    n = int(digest, 16)
    return "".join(alphabet[(n >> (5 * i)) % 36] for i in range(13))


class Evaluator:
    """Values of one Bicep file for given parameter values (defaults otherwise).

    Module outputs and resource properties become `Unknown('<symbol.path>')`, so a test can
    still see which output a setting is built from.
    """

    def __init__(self, bicep: BicepFile, params: Mapping[str, Any] | None = None) -> None:
        self.bicep = bicep
        self.given = dict(params or {})
        self.cache: dict[str, Any] = {}
        self.symbols = set(bicep.resources) | set(bicep.modules)
        self.functions: dict[str, Callable[..., Any]] = {
            "toLower": lambda s: s.lower(),
            "toUpper": lambda s: s.upper(),
            "take": lambda s, n: s[:n],
            "last": lambda s: s[-1],
            "first": lambda s: s[0],
            "split": lambda s, sep: s.split(sep),
            "empty": lambda v: not v,
            "contains": lambda a, b: b in a,
            "length": len,
            "string": str,
            "concat": lambda *xs: (
                [y for x in xs for y in x] if all(isinstance(x, list) for x in xs) else "".join(xs)
            ),
            "union": lambda *xs: {k: v for x in xs for k, v in x.items()},
            "uniqueString": _unique_string,
            "guid": lambda *xs: _unique_string("guid", *xs),
            "environment": lambda: {
                "name": "AzureCloud",
                "suffixes": {"storage": "core.windows.net", "keyvaultDns": ".vault.azure.net"},
            },
            "tenant": lambda: {"tenantId": Unknown("<tenant().tenantId>")},
            "subscription": lambda: {
                "id": "/subscriptions/00000000-0000-0000-0000-000000000000",
                "subscriptionId": "00000000-0000-0000-0000-000000000000",
            },
            "resourceGroup": lambda: {"id": Unknown("<resourceGroup().id>"), "location": "x"},
            "subscriptionResourceId": lambda t, *names: (
                f"/subscriptions/00000000-0000-0000-0000-000000000000/providers/{t}/"
                + "/".join(names)
            ),
            "loadJsonContent": lambda p: json.loads((bicep.path.parent / p).read_text()),
            "deployment": lambda: {"name": "deployment"},
        }

    def param(self, name: str) -> Any:
        if name in self.given:
            return self.given[name]
        decl = self.bicep.params[name]
        if decl.value is None:
            raise BicepError(f"parameter {name} has no default and no value was given")
        return self.eval(decl.value)

    def var(self, name: str) -> Any:
        if name not in self.cache:
            self.cache[name] = self.eval(self.bicep.vars[name].value)
        return self.cache[name]

    def eval(self, node: Any, scope: Mapping[str, Any] | None = None) -> Any:
        scope = scope or {}
        if node is None or isinstance(node, str | int | bool):
            return node
        if isinstance(node, Interpolated):
            return "".join(
                p if isinstance(p, str) else self.text(self.eval(p, scope)) for p in node.parts
            )
        if isinstance(node, Obj):
            return {k: self.eval(v, scope) for k, v in node.items}
        if isinstance(node, Arr):
            return [self.eval(v, scope) for v in node.items]
        if isinstance(node, Ref):
            if node.name in scope:
                return scope[node.name]
            if node.name in self.bicep.params:
                return self.param(node.name)
            if node.name in self.bicep.vars:
                return self.var(node.name)
            if node.name in self.symbols:
                return Unknown(f"<{node.name}>")
            raise BicepError(f"unknown name {node.name}")
        if isinstance(node, Member):
            target = self.eval(node.target, scope)
            if isinstance(target, Unknown):
                return Unknown(f"{target[:-1]}.{node.name}>")
            if isinstance(target, dict):
                if node.name in target:
                    return target[node.name]
                if node.safe:
                    return None
            raise BicepError(f"no property {node.name} in {target!r}")
        if isinstance(node, Index):
            target, index = self.eval(node.target, scope), self.eval(node.index, scope)
            if isinstance(target, Unknown):
                return Unknown(f"{target[:-1]}[{index}]>")
            return target[index]
        if isinstance(node, Call):
            if node.name not in self.functions:
                raise BicepError(f"unsupported function {node.name}()")
            return self.functions[node.name](*(self.eval(a, scope) for a in node.args))
        if isinstance(node, Unary):
            value = self.eval(node.operand, scope)
            return (not value) if node.op == "!" else -value
        if isinstance(node, Ternary):
            condition = self.eval(node.condition, scope)
            if isinstance(condition, Unknown):
                raise BicepError(f"condition depends on a deployment value: {condition}")
            return self.eval(node.then if condition else node.otherwise, scope)
        if isinstance(node, Binary):
            left = self.eval(node.left, scope)
            if node.op == "&&":
                return bool(left) and bool(self.eval(node.right, scope))
            if node.op == "||":
                return bool(left) or bool(self.eval(node.right, scope))
            if node.op == "??":
                return left if left is not None else self.eval(node.right, scope)
            right = self.eval(node.right, scope)
            ops: dict[str, Callable[[Any, Any], Any]] = {
                "==": lambda a, b: a == b,
                "!=": lambda a, b: a != b,
                "=~": lambda a, b: str(a).lower() == str(b).lower(),
                "!~": lambda a, b: str(a).lower() != str(b).lower(),
                "+": lambda a, b: a + b,
                "-": lambda a, b: a - b,
                "<": lambda a, b: a < b,
                ">": lambda a, b: a > b,
            }
            return ops[node.op](left, right)
        if isinstance(node, ForLoop):
            out = []
            for i, item in enumerate(self.eval(node.source, scope)):
                inner = {**scope, node.item: item}
                if node.index:
                    inner[node.index] = i
                if node.condition is None or self.eval(node.condition, inner):
                    out.append(self.eval(node.body, inner))
            return out
        raise BicepError(f"cannot evaluate {type(node).__name__}")

    @staticmethod
    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int):
            return str(value)
        raise BicepError(f"cannot interpolate {value!r}")
