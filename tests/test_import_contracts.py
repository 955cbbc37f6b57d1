"""The import-linter contracts (pyproject.toml, run by `make lint`) see every function folder.

A folder import-linter does not know is outside every contract, so a new handler that imported
`shared.services` wrongly, or another handler, would pass unnoticed.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def function_folders() -> set[str]:
    """The folders function_app.py registers a Blueprint of."""
    tree = ast.parse((ROOT / "function_app.py").read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    return {name for name in imported if (ROOT / name / "__init__.py").exists()}


def test_every_function_folder_is_in_the_layers_and_may_compose_services() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = {c["id"]: c for c in config["contracts"]}
    folders = function_folders()
    assert len(folders) >= 11
    assert folders <= set(config["root_packages"])
    top_layer = {p.strip() for p in contracts["layers"]["layers"][0].split("|")}
    assert folders == top_layer
    assert folders <= set(contracts["services"]["allowed_importers"])
