"""docs/developer.md (issue 15, "Done when"): each Python program in it runs as it is and
prints the output the guide shows after it; the files it refers to exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "developer.md"
#: A ```python block, and the ```text block right after it (the output shown), if any.
_PROGRAM = re.compile(r"```python\n(.*?)```\n(?:\s*```text\n(.*?)```)?", re.DOTALL)


def programs() -> list[tuple[str, str | None]]:
    return [(code, output) for code, output in _PROGRAM.findall(GUIDE.read_text())]


PROGRAMS = programs()


def test_guide_has_programs_with_output() -> None:
    """The guide holds its programs, each followed by what it prints."""
    assert len(PROGRAMS) >= 2
    assert all(output for _, output in PROGRAMS)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "output"), PROGRAMS, ids=[f"program-{i}" for i, _ in enumerate(PROGRAMS)]
)
def test_program_runs_and_prints_what_the_guide_shows(
    tmp_path: Path, code: str, output: str | None
) -> None:
    """A program of the guide runs (in an empty directory) and prints what follows it."""
    program = tmp_path / "program.py"
    program.write_text(code)
    result = subprocess.run(
        [sys.executable, str(program)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == output, result.stderr


def test_referenced_files_exist() -> None:
    """Every repository file the guide links or names (examples/, tests/, docs/) exists,
    the complete .tac among them."""
    text = GUIDE.read_text()
    named = set(re.findall(r"\b((?:examples|tests|docs)/[\w./-]+\.(?:py|tac|md))", text))
    assert "examples/custom_registrar.tac" in named
    missing = [name for name in sorted(named) if not (ROOT / name).exists()]
    assert not missing
