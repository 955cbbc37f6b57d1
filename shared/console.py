"""The analyst console: static files kept in the repo's `console/` folder, served as they are
under a strict Content-Security-Policy (every script and style from Vigil itself, none inline).
The page reads and writes only through the HTTP API; `me` tells it who is signed in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from shared import query_params as q
from shared.access import RESPONDER, ROLES, Principal
from shared.web import Reply

FOLDER: Final = Path(__file__).resolve().parent.parent / "console"
TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def asset(name: str, query: Mapping[str, str], folder: Path = FOLDER) -> Reply:
    """One file of the folder by its plain name (no sub-folders, no hidden files, only the
    types above); 404 otherwise, 400 for a query parameter (the files take none)."""
    try:
        q.known(query, ())
    except q.BadInput as bad:
        return Reply.error(400, str(bad))
    suffix = Path(name).suffix
    path = folder / name
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in TYPES:
        return Reply.error(404, f"name: no console file {name!r}")
    if not path.is_file():
        return Reply.error(404, f"name: no console file {name!r}")
    return Reply(200, path.read_text(encoding="utf-8"), TYPES[suffix], dict(HEADERS))


def me(who: Principal) -> Reply:
    """The caller and the roles they hold, so the console offers only what they may do."""
    roles = [r for r in ROLES if who.may(r)]
    return Reply.json(200, {**who.as_json(), "roles": roles, "mayRespond": who.may(RESPONDER)})
