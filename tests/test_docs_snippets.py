"""Docs that run (issue 15, finding 10): every ```python block of README.md and docs/*.md
is a complete program, and this test runs each one as written, in a new empty directory,
with a timeout; a ```text block right after a program is what it prints, exactly.

An HTML comment right before a block changes what is done with it (several words may be
combined; a word in parentheses is a comment)::

    <!-- snippet: check-only (needs root and a TUN device) -->
        Compiled and every import of it resolved (the module, then the name), not run:
        for programs that need what a test cannot give them.
    <!-- snippet: file=echo_pe.py -->
        Also saved under this name in the directory of every later block of the same
        document: a later block can run it beside itself (add check-only when it does
        not end by itself, a server).
    <!-- snippet: beside="twistd -n enrp" ready="ENRP server .* started" -->
        Run beside these long-running commands (repeat the pair for more), as a reader
        would in other terminals of the same directory: each is started in turn, in a
        network namespace of the test's own (root), and the program runs once the
        command's output matches ``ready``; then the commands are stopped
        (tests/support/beside.py).

Shell blocks are not run; docs/developer.md's programs are among those run here.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import requireNamespaces

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BESIDE = ROOT / "tests" / "support" / "beside.py"
TIMEOUT = 60

#: An optional marker, a ```python block, and the ```text block right after it, if any.
_BLOCK = re.compile(
    r"(?:<!--\s*snippet:(?P<marker>[^>]*?)-->[ \t]*\n\s*)?"
    r"^```python\n(?P<code>.*?)^```[ \t]*\n"
    r"(?:\s*^```text\n(?P<output>.*?)^```)?",
    re.DOTALL | re.MULTILINE,
)
_MARKER = re.compile(r"<!--\s*snippet:")


@dataclass(frozen=True)
class Snippet:
    """One ```python block and what its marker asks."""

    document: str
    line: int
    code: str
    output: str | None = None
    checkOnly: bool = False
    file: str | None = None
    #: (command, regular expression its output matches once it is ready)
    beside: tuple[tuple[str, str], ...] = ()
    #: The ``file=`` blocks before this one in its document: (name, code).
    files: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"


def _parseMarker(text: str, where: str) -> dict[str, object]:
    """The words of a marker: check-only, file=NAME, beside=COMMAND ready=REGEX pairs."""
    words = shlex.split(re.sub(r"\([^)]*\)", " ", text))
    found: dict[str, object] = {"checkOnly": False, "file": None, "beside": []}
    beside: list[tuple[str, str]] = []
    for word in words:
        key, _, value = word.partition("=")
        if key == "check-only" and not value:
            found["checkOnly"] = True
        elif key == "file" and value:
            found["file"] = value
        elif key == "beside" and value:
            beside.append((value, ""))
        elif key == "ready" and value and beside and not beside[-1][1]:
            beside[-1] = (beside[-1][0], value)
        else:
            raise ValueError(f"{where}: unknown snippet marker word {word!r}")
    if any(not ready for _, ready in beside):
        raise ValueError(f"{where}: every beside= needs a ready= after it")
    found["beside"] = tuple(beside)
    return found


def snippets(document: Path) -> list[Snippet]:
    """The ```python blocks of ``document``, in order."""
    text = document.read_text()
    where = str(document.relative_to(ROOT))
    found: list[Snippet] = []
    files: list[tuple[str, str]] = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code"))
        marker = _parseMarker(match["marker"] or "", f"{where}:{line}")
        snippet = Snippet(
            where,
            line,
            match["code"],
            match["output"],
            bool(marker["checkOnly"]),
            marker["file"],  # type: ignore[arg-type]
            marker["beside"],  # type: ignore[arg-type]
            tuple(files),
        )
        found.append(snippet)
        if snippet.file is not None:
            files.append((snippet.file, snippet.code))
    return found


SNIPPETS = [snippet for document in DOCUMENTS for snippet in snippets(document)]
#: The blocks run as programs (the others are checked).
RUN = [s for s in SNIPPETS if not s.checkOnly]
CHECK = [s for s in SNIPPETS if s.checkOnly]


def test_snippets_are_found() -> None:
    """The extraction finds the blocks of the docs and their markers (a broken pattern
    would leave the other tests with nothing), and every marker sits on a block."""
    documents = {s.document for s in SNIPPETS}
    assert {"docs/asap.md", "docs/developer.md", "docs/wire.md"} <= documents
    assert sum(s.output is not None for s in SNIPPETS) >= 2
    for document in DOCUMENTS:
        text = document.read_text()
        markers = len(_MARKER.findall(text))
        assert markers == sum(bool(m["marker"]) for m in _BLOCK.finditer(text)), document


def test_developer_guide_shows_what_its_programs_print() -> None:
    """docs/developer.md (issue 15, "Done when"): each of its programs is followed by
    what it prints, which the run below compares."""
    guide = [s for s in SNIPPETS if s.document == "docs/developer.md"]
    assert len(guide) >= 2
    assert all(s.output for s in guide)


#: A repository file that a document names: examples/..., tests/..., docs/... and so on.
_FILE = re.compile(
    r"\b((?:examples|tests|docs|benchmarks|scripts|twisted_rserpool)/[\w./-]+"
    r"\.(?:py|tac|md|toml|service))\b"
)


def test_referenced_files_exist() -> None:
    """Every repository file the README and docs/ name exists (the complete .tac that
    docs/developer.md shows among them)."""
    named = {
        (str(document.relative_to(ROOT)), name)
        for document in DOCUMENTS
        for name in _FILE.findall(document.read_text())
    }
    assert ("docs/developer.md", "examples/custom_registrar.tac") in named
    missing = [
        f"{document}: {name}" for document, name in sorted(named) if not (ROOT / name).exists()
    ]
    assert not missing


def test_marker_words() -> None:
    """The marker words parse, and a misspelt one is an error rather than ignored."""
    marker = _parseMarker(' file=pe.py beside="twistd -n enrp" ready="started" (why)', "x")
    assert marker == {
        "checkOnly": False,
        "file": "pe.py",
        "beside": (("twistd -n enrp", "started"),),
    }
    assert _parseMarker(" check-only (needs root) ", "x")["checkOnly"] is True
    with pytest.raises(ValueError, match="checkonly"):
        _parseMarker(" checkonly ", "x")
    with pytest.raises(ValueError, match="ready"):
        _parseMarker(' beside="twistd -n enrp" ', "x")


def _imports(tree: ast.AST) -> list[tuple[str, str]]:
    """(module, name) for every import of a program (name ``""`` for ``import module``)."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("snippet", CHECK, ids=[s.name for s in CHECK])
def test_snippet_compiles_and_its_imports_resolve(snippet: Snippet) -> None:
    """A block that is checked, not run on its own: it compiles, and what it imports exists."""
    tree = ast.parse(snippet.code, snippet.name)
    compile(tree, snippet.name, "exec")
    missing = []
    for module, name in _imports(tree):
        imported = importlib.import_module(module)
        if name and name != "*" and not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    assert not missing


def _write(directory: Path, snippet: Snippet) -> Path:
    for name, code in snippet.files:
        (directory / name).write_text(code)
    program = directory / (snippet.file or "snippet.py")
    program.write_text(snippet.code)
    return program


@pytest.mark.slow
@pytest.mark.parametrize("snippet", RUN, ids=[s.name for s in RUN])
def test_snippet_runs_as_written(tmp_path: Path, snippet: Snippet) -> None:
    """A block runs as a complete program in an empty directory (beside the servers its
    marker names), ends by itself with status 0, and prints what the text block after it
    shows."""
    program = _write(tmp_path, snippet)
    command = [sys.executable, program.name]
    if snippet.beside:
        requireNamespaces()
        pairs = [[f"--beside={c}", f"--ready={r}"] for c, r in snippet.beside]
        command = [
            "unshare",
            "--net",
            sys.executable,
            str(BESIDE),
            *(word for pair in pairs for word in pair),
            "--",
            *command,
        ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stderr
    if snippet.output is not None:
        assert result.stdout == snippet.output, result.stderr
