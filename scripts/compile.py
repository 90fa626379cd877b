"""Build the sans-IO hot modules with mypyc into a separate tree, and test that build.

Run: ``scripts/compile`` (build, skipped when nothing changed), ``scripts/compile --test``
(build, then the unit tests of the compiled modules against the compiled build), or
``scripts/compile --path`` (print the tree to put first on ``PYTHONPATH``).

The tree is ``build/mypyc/lib``: a copy of the whole ``twisted_rserpool`` package, with a
C extension beside each module of :data:`MODULES`. Python imports an extension before the
``.py`` file of the same name, so with ``PYTHONPATH=build/mypyc/lib`` (and
``PYTHONSAFEPATH=1``, so that ``python -m`` does not put the checkout first) every import
of those modules is the compiled one and every other module the copied pure-Python one.
The checkout itself stays pure Python: the test suite and an editable install never see
a compiled module.

The build runs mypy (as mypyc does, with the project's configuration) and compiles one C
file per module on ``--jobs`` cores: 50-85 s of two shared cores for :data:`MODULES`. A
stamp of the package's sources, the module list, the optimisation level and the mypyc
version skips the build when none changed; ``--test`` then takes about 45 s more.

The message and chunk codecs compile since their class constants (``TYPE``,
``POLICY_TYPE``) are set after each class body, on a small non-dataclass base that
declares them: mypyc passes every class attribute of a dataclass's body, ``ClassVar`` or
not, to ``@dataclass`` as a field (mypyc issue 1122). In the compiled build, the codecs
check the annotated types at run time (a ``str`` where ``bytes`` is declared raises
``TypeError``), and only ``Message`` and ``HandleResolutionResponse`` may be subclassed in
Python (``enrp.resolution`` does; ``wire.message.name_slots`` keeps a slotted subclass
from shadowing the compiled fields).

Not compiled (``--modules`` takes any list, for trying): ``handlespace.policies`` needs
its ``RsplibPolicyType`` constants declared ``Final``; modules whose classes are
subclassed by interpreted code (``enrp.registrar``'s ``Registrar``, ``transport.protocol``)
need ``@mypyc_attr(allow_interpreted_subclasses=True)`` on them (without it mypyc promises
nothing for subclasses written in Python; it refused those of ``RSerPoolProtocol``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "twisted_rserpool"
BUILD = ROOT / "build" / "mypyc"
#: The tree to put first on sys.path: the package with the compiled modules in it.
LIB = BUILD / "lib"
STAMP = LIB / ".compiled-stamp"

#: The modules compiled by default: the message and chunk codecs, the TCP mapping's fast
#: path and connection core, the outbox of unacknowledged messages, the deadline queue
#: and the handlespace: the sans-IO modules on the message path (see --help for others).
MODULES = (
    "twisted_rserpool.wire.errors",
    "twisted_rserpool.wire.limits",
    "twisted_rserpool.wire.fastpath",
    "twisted_rserpool.wire.parameters",
    "twisted_rserpool.wire.message",
    "twisted_rserpool.wire.asap",
    "twisted_rserpool.wire.enrp",
    "twisted_rserpool.wire.tcpmapping",
    "twisted_rserpool.transport.connection",
    "twisted_rserpool.asap.outbox",
    "twisted_rserpool.deadline",
    "twisted_rserpool.handlespace.cache",
    "twisted_rserpool.handlespace.checksum",
    "twisted_rserpool.handlespace.element",
    "twisted_rserpool.handlespace.errors",
    "twisted_rserpool.handlespace.events",
    "twisted_rserpool.handlespace.handlespace",
    "twisted_rserpool.handlespace.pool",
    "twisted_rserpool.handlespace.sampling",
    "twisted_rserpool.handlespace.sortedlist",
)

#: The unit tests of the compiled modules, run by ``--test`` against the compiled build.
TESTS = (
    "tests/wire",
    # The registrar's cached answers: a Python subclass of a compiled message class.
    "tests/enrp/test_registrar_answers.py",
    "tests/transport",
    "tests/handlespace",
    "tests/test_deadline.py",
    "tests/asap/test_cores.py",
)

SETUP = """\
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="twisted-rserpool-mypyc",
    ext_modules=mypycify(
        {paths!r}, opt_level={opt_level!r}, multi_file=True, target_dir={target!r}
    ),
)
"""


def modulePath(module: str) -> str:
    """The source file of a module, relative to the package's parent directory."""
    return module.replace(".", "/") + ".py"


def stamp(modules: Sequence[str], optLevel: str) -> str:
    """What the build depends on: every source of the package, the list, the compiler."""
    import mypy.version  # noqa: PLC0415 (only the build needs mypy)

    digest = hashlib.sha256(
        f"{sorted(modules)} O{optLevel} mypy {mypy.version.__version__}".encode()
    )
    for source in sorted((ROOT / PACKAGE).rglob("*.py")):
        digest.update(str(source.relative_to(ROOT)).encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def build(modules: Sequence[str], optLevel: str, jobs: int, force: bool) -> float:
    """Copy the package into :data:`LIB` and compile ``modules`` there; the seconds taken
    (0 when the stamp says the tree is current)."""
    wanted = stamp(modules, optLevel)
    if not force and STAMP.exists() and STAMP.read_text() == wanted:
        return 0.0
    started = time.monotonic()
    shutil.rmtree(LIB, ignore_errors=True)
    shutil.copytree(
        ROOT / PACKAGE,
        LIB / PACKAGE,
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "dropin.cache"),
    )
    paths = ["--config-file", str(ROOT / "pyproject.toml"), *map(modulePath, modules)]
    setup = BUILD / "setup.py"
    setup.write_text(SETUP.format(paths=paths, opt_level=optLevel, target=str(BUILD / "c")))
    command = [sys.executable, str(setup), "build_ext", "--inplace", "--parallel", str(jobs)]
    command += ["--build-temp", str(BUILD / "temp"), "--build-lib", str(BUILD / "out")]
    log = BUILD / "build.log"
    with log.open("wb") as output:
        result = subprocess.run(
            command, check=False, cwd=LIB, stdout=output, stderr=subprocess.STDOUT
        )
    if result.returncode:
        sys.exit(f"scripts/compile: mypyc failed (exit {result.returncode}); see {log}")
    STAMP.write_text(wanted)
    return time.monotonic() - started


def compiledEnvironment() -> dict[str, str]:
    """The environment that imports the compiled tree first."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(LIB), environment.get("PYTHONPATH")])
    )
    environment["PYTHONSAFEPATH"] = "1"
    return environment


def notCompiled(modules: Sequence[str]) -> list[str]:
    """The modules (imported now) whose file is not a C extension."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return [
        f"{module} ({importlib.import_module(module).__file__})"
        for module in modules
        if not str(importlib.import_module(module).__file__).endswith(suffixes)
    ]


class _StillCompiled:
    """A pytest plugin: fails the session if a compiled module was replaced meanwhile."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = modules

    def pytest_sessionfinish(self, session: object, exitstatus: int) -> None:
        missing = notCompiled(self.modules)
        if missing:
            print("\nscripts/compile: no longer compiled:", *missing, sep="\n  ")
            session.exitstatus = 1  # type: ignore[attr-defined]


def runPytest(modules: Sequence[str], arguments: Sequence[str]) -> int:
    """Inside the compiled environment: import the compiled modules first (so that pytest's
    own additions to sys.path cannot shadow them), check them, then run pytest."""
    import pytest  # noqa: PLC0415 (the test role only)

    missing = notCompiled(modules)
    if missing:
        print("scripts/compile: not compiled:", *missing, sep="\n  ")
        return 1
    print(f"scripts/compile: {len(modules)} compiled modules from {LIB}")
    options = ["--import-mode=append", "-p", "no:cacheprovider", "-q"]
    return int(pytest.main([*options, *arguments], plugins=[_StillCompiled(modules)]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Arguments after -- go to pytest (with --test), instead of the default tests.",
    )
    parser.add_argument("--test", action="store_true", help="then run the compiled modules' tests")
    parser.add_argument("--path", action="store_true", help="print the compiled tree and exit")
    parser.add_argument("--force", action="store_true", help="build even if nothing changed")
    parser.add_argument("--jobs", type=int, default=2, help="C compilers at once (2)")
    parser.add_argument("--opt-level", default="3", help="C optimisation level (3)")
    parser.add_argument(
        "--modules", nargs="+", default=MODULES, metavar="MODULE", help="modules to compile"
    )
    parser.add_argument("--role", choices=("pytest",), help=argparse.SUPPRESS)
    options, rest = parser.parse_known_args(argv)
    rest = [argument for argument in rest if argument != "--"]
    if options.role == "pytest":
        return runPytest(options.modules, rest)
    if options.path:
        print(LIB)
        return 0
    seconds = build(options.modules, options.opt_level, options.jobs, options.force)
    if seconds:
        print(f"scripts/compile: built {len(options.modules)} modules in {seconds:.0f} s ({LIB})")
    else:
        print(f"scripts/compile: {LIB} is current")
    if not options.test:
        return 0
    command = [sys.executable, str(Path(__file__).resolve()), "--role", "pytest"]
    command += ["--modules", *options.modules, "--", *(rest or TESTS)]
    return subprocess.run(command, check=False, cwd=ROOT, env=compiledEnvironment()).returncode


if __name__ == "__main__":
    sys.exit(main())
