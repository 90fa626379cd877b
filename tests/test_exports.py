"""Issue 15 finding 3: every import the README and docs/ show works, and the packages
export what they promise (``from twisted_rserpool.enrp import Registrar`` raised ImportError).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FROM_IMPORT = re.compile(
    r"^[ \t>]*`?from\s+(twisted_rserpool(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n`]+)",
    re.MULTILINE,
)
_IMPORT = re.compile(r"^[ \t>]*`?import\s+(twisted_rserpool(?:\.\w+)*)", re.MULTILINE)
#: A README table row naming a module, and the backticked names in it.
_ROW = re.compile(r"^\| `(twisted_rserpool(?:\.\w+)*)` \|(.*)\|\s*$", re.MULTILINE)
_NAME = re.compile(r"`([A-Z]\w*|\w+\.\w+)`")
#: Twisted's own names, which the table names as what our classes work with.
_TWISTED = {"ClientService"}


def _names(clause: str) -> list[str]:
    """The names a ``from ... import`` clause imports (``X as Y`` is X)."""
    clause = re.sub(r"#[^\n]*", "", clause).strip("() \t\n")
    return [part.split()[0] for part in clause.split(",") if part.strip()]


def documentedImports() -> list[tuple[str, str, str]]:
    """(document, module, name) for every ``from twisted_rserpool... import`` in the docs,
    with name ``""`` for a plain ``import twisted_rserpool...``."""
    found: list[tuple[str, str, str]] = []
    for document in DOCUMENTS:
        text = document.read_text()
        where = str(document.relative_to(ROOT))
        for module, clause in _FROM_IMPORT.findall(text):
            found += [(where, module, name) for name in _names(clause)]
        found += [(where, module, "") for module in _IMPORT.findall(text)]
    return found


IMPORTS = documentedImports()


def test_the_docs_show_imports() -> None:
    """The extraction finds the imports (a broken pattern would make the next test empty)."""
    documents = {document for document, _, _ in IMPORTS}
    assert {"docs/asap.md", "docs/developer.md", "docs/redirect.md"} <= documents
    assert ("docs/developer.md", "twisted_rserpool.enrp", "Registrar") in IMPORTS


@pytest.mark.parametrize(
    ("document", "module", "name"), IMPORTS, ids=[f"{d}:{m}:{n}" for d, m, n in IMPORTS]
)
def test_documented_import_works(document: str, module: str, name: str) -> None:
    """Each import a document shows resolves: the module imports and has the name."""
    imported = importlib.import_module(module)
    if name and not hasattr(imported, name):
        importlib.import_module(f"{module}.{name}")  # a submodule: from package import module


def _tableNames() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    return [
        (module, name)
        for module, row in _ROW.findall(text)
        for name in _NAME.findall(row)
        if name not in _TWISTED
    ]


TABLE = _tableNames()


def test_readme_table_names_exist() -> None:
    """Each class or dotted name that the README's module table lists beside a module is
    an attribute of that module (``Registrar`` of ``twisted_rserpool.enrp``...)."""
    assert ("twisted_rserpool.enrp", "Registrar") in TABLE
    missing = []
    for module, name in TABLE:
        value: object = importlib.import_module(module)
        for part in name.split("."):
            value = getattr(value, part, None)
        if value is None:
            missing.append(f"{module}: {name}")
    assert not missing


@pytest.mark.parametrize(
    "package", ["twisted_rserpool.asap", "twisted_rserpool.enrp", "twisted_rserpool.ike"]
)
def test_every_export_resolves(package: str) -> None:
    """Every name in a package's ``__all__`` is there, and is the object of the module
    that defines it."""
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        defining = getattr(value, "__module__", "")
        if defining.startswith("twisted_rserpool."):  # a class or function, not an alias
            assert getattr(importlib.import_module(defining), name) is value, name


def test_readme_promise() -> None:
    """The imports a reader of the README and docs/developer.md tries first."""
    from twisted_rserpool.enrp import ENRPServer, Registrar, TakeoverRegistrar
    from twisted_rserpool.enrp.tap import makeService
    from twisted_rserpool.ike import IkeEndpoint, RedirectPolicy

    assert issubclass(TakeoverRegistrar, Registrar)
    assert ENRPServer.__module__ == "twisted_rserpool.enrp.service"
    assert RedirectPolicy.__module__ == "twisted_rserpool.ike.redirect"
    assert IkeEndpoint.__module__ == "twisted_rserpool.ike.endpoint"
    assert callable(makeService)
