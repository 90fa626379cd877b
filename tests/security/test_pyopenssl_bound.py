"""Issue 15 finding 9: pyOpenSSL is bounded, and the private binding we use is there.

security/_openssl.py binds the TLS-PSK callbacks through pyOpenSSL's private cffi binding,
which a new major version may change: pyproject.toml bounds pyOpenSSL to the major
versions tested, the installed one must be inside the bound, and every function and
attribute _openssl.py uses must exist.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from OpenSSL import SSL
from packaging.requirements import Requirement
from packaging.version import Version

import twisted_rserpool.security._openssl as binding

ROOT = Path(__file__).resolve().parents[2]


def _requirement(name: str) -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (requirement,) = [
        Requirement(r) for r in project["dependencies"] if Requirement(r).name.lower() == name
    ]
    return requirement


def test_pyopenssl_has_an_upper_bound_and_is_inside_it() -> None:
    """pyproject.toml says pyopenssl<NEXT-MAJOR, and the installed pyOpenSSL satisfies it."""
    requirement = _requirement("pyopenssl")
    uppers = [s for s in requirement.specifier if s.operator == "<"]
    assert uppers, f"no upper bound on pyOpenSSL: {requirement}"
    installed = Version(version("pyopenssl"))
    assert requirement.specifier.contains(installed), (installed, str(requirement.specifier))
    # The bound is the next major: a new major is tried (and this test moved) on purpose.
    assert Version(uppers[0].version) == Version(f"{installed.major + 1}")


def test_the_private_binding_has_what_we_use() -> None:
    """Every OpenSSL.SSL._lib function _openssl.py calls exists, as do _ffi and the
    pointer attributes of Context and Connection."""
    source = Path(binding.__file__).read_text()
    used = sorted(set(re.findall(r"_lib\.(\w+)", source)))
    assert "SSL_CTX_set_psk_server_callback" in used  # the scan found the calls
    lib = SSL._lib  # type: ignore[attr-defined]
    missing = [name for name in used if not hasattr(lib, name)]
    assert not missing, f"pyOpenSSL {version('pyopenssl')} lacks {missing}"
    ffi = SSL._ffi  # type: ignore[attr-defined]
    for name in ("callback", "cast", "memmove", "string", "NULL"):
        assert hasattr(ffi, name), name
    context = SSL.Context(SSL.TLS_METHOD)
    assert hasattr(context, "_context")
    assert hasattr(SSL.Connection(context, None), "_ssl")
