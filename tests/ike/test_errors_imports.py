"""``ike/errors.py`` stands below the codec: it imports nothing of it, not even for types."""

from __future__ import annotations

import ast
import subprocess
import sys

from twisted_rserpool.ike import errors

# What errors.py may import: the constants (NotifyType), nothing that imports errors back.
ALLOWED = {"__future__", "twisted_rserpool.ike.constants"}


def test_errors_imports_only_the_constants() -> None:
    """Every import statement of errors.py, TYPE_CHECKING blocks included, names only the
    constants: no cycle through the codec (ike.codec, ike.payloads), at run or check time."""
    assert errors.__file__ is not None
    with open(errors.__file__, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module is not None and node.level == 0
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert imported <= ALLOWED, imported - ALLOWED


def test_errors_imports_alone() -> None:
    """A fresh interpreter imports ike.errors alone and loads none of the codec with it."""
    probe = (
        "import sys, twisted_rserpool.ike.errors as e; "
        "e.InvalidIkeMessage('probe'); "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('twisted_rserpool.ike'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert loaded == {
        "twisted_rserpool.ike",
        "twisted_rserpool.ike.constants",
        "twisted_rserpool.ike.errors",
    }
