"""Who may do what: authenticated identities, their roles and the pools they may join.

RFC 5355 sections 2.1-2.4: for PSK, having a pre-shared key constitutes authorization, and
the administrators decide which nodes may take part in which pool. The policy maps each
authenticated identity (a PSK identity or a certificate subject) to roles and pool handles.

A policy file is TOML::

    # pe-17 may register pool elements in "echo" and any pool starting with "counter-"
    [identities."pe-17"]
    roles = ["pool-element"]
    pools = ["echo", "counter-*"]
    max-pool-elements = 4

    # enrp-2 is the ENRP server 0x2; no other identity may announce that identifier
    [identities."enrp-2"]
    roles = ["enrp-server"]
    server-identifier = 0x2

    # anyone authenticated (but not listed above) may resolve handles
    [default]
    roles = ["pool-user"]

Pool patterns use shell wildcards (``fnmatch``) on the pool handle decoded as UTF-8 (bytes
that are not UTF-8 match only ``*``).
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Role(Enum):
    """What an identity may be in an operational scope."""

    POOL_ELEMENT = "pool-element"
    POOL_USER = "pool-user"
    ENRP_SERVER = "enrp-server"


@dataclass(frozen=True, slots=True)
class Grant:
    """What one identity is allowed: roles, pool handle patterns, a limit on its PEs.

    ``server_identifier`` binds an ENRP server's identity to its server identifier
    (RFC 5355 2.5): it may announce no other, and no other identity may announce it.
    """

    roles: frozenset[Role]
    pools: tuple[str, ...] = ("*",)
    max_pool_elements: int | None = None
    server_identifier: int | None = None

    def allows_pool(self, pool_handle: bytes) -> bool:
        """Whether this grant covers ``pool_handle``."""
        try:
            name = pool_handle.decode("utf-8")
        except UnicodeDecodeError:
            return "*" in self.pools
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.pools)


#: Every role in every pool: the policy when none is configured (the PSK is the authorization).
GRANT_ALL = Grant(frozenset(Role))


class PolicyError(ValueError):
    """An authorization policy file that cannot be used, with the reason."""


@dataclass(frozen=True)
class AuthorizationPolicy:
    """Grants per identity, with a default for authenticated identities not listed.

    ``default`` of ``None`` refuses identities that are not listed.
    """

    grants: Mapping[str, Grant] = field(default_factory=dict)
    default: Grant | None = GRANT_ALL

    def grant_for(self, identity: str | None) -> Grant | None:
        """The grant of an authenticated identity (``None``: unauthenticated or refused)."""
        if identity is None:
            return None
        grant = self.grants.get(identity)
        return grant if grant is not None else self.default

    def may(self, identity: str | None, role: Role, pool_handle: bytes | None = None) -> bool:
        """Whether ``identity`` may act in ``role`` (for ``pool_handle``, where one applies)."""
        grant = self.grant_for(identity)
        if grant is None or role not in grant.roles:
            return False
        return pool_handle is None or grant.allows_pool(pool_handle)

    def server_identifiers(self) -> dict[str, int]:
        """The server identifier bound to each identity that has one in the policy."""
        return {
            identity: grant.server_identifier
            for identity, grant in self.grants.items()
            if grant.server_identifier is not None
        }

    def max_pool_elements(self, identity: str | None) -> int | None:
        """The most PEs ``identity`` may have registered at once (``None``: no own limit)."""
        grant = self.grant_for(identity)
        return None if grant is None else grant.max_pool_elements

    @classmethod
    def from_file(cls, path: str | Path) -> AuthorizationPolicy:
        """Read a TOML policy file (see the module docstring); :class:`PolicyError` if bad."""
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except OSError as e:
            raise PolicyError(f"cannot read authorization policy {path}: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(f"authorization policy {path} is not valid TOML: {e}") from e
        return cls.from_mapping(document, str(path))

    @classmethod
    def from_mapping(
        cls, document: Mapping[str, object], source: str = "policy"
    ) -> AuthorizationPolicy:
        """Build a policy from the parsed TOML document."""
        unknown = set(document) - {"identities", "default"}
        if unknown:
            raise PolicyError(f"{source}: unknown section(s) {sorted(unknown)}")
        identities = document.get("identities", {})
        if not isinstance(identities, Mapping):
            raise PolicyError(f"{source}: [identities] must be a table")
        grants = {
            str(name): _grant(entry, f"{source}: identity {name!r}")
            for name, entry in identities.items()
        }
        owners: dict[int, str] = {}
        for name, grant in grants.items():
            server = grant.server_identifier
            if server is None:
                continue
            if server in owners:
                raise PolicyError(
                    f"{source}: server-identifier 0x{server:08x} is given to both"
                    f" {owners[server]!r} and {name!r}"
                )
            owners[server] = name
        default: Grant | None = None
        if "default" in document:
            default = _grant(document["default"], f"{source}: [default]")
            if default.server_identifier is not None:
                raise PolicyError(f"{source}: [default] cannot have a server-identifier")
        return cls(grants, default)


def _grant(entry: object, where: str) -> Grant:
    if not isinstance(entry, Mapping):
        raise PolicyError(f"{where} must be a table")
    unknown = set(entry) - {"roles", "pools", "max-pool-elements", "server-identifier"}
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown)}")
    roles = entry.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise PolicyError(f"{where}: roles must be a list of strings")
    try:
        parsed = frozenset(Role(r) for r in roles)
    except ValueError as e:
        known = ", ".join(r.value for r in Role)
        raise PolicyError(f"{where}: {e} (known roles: {known})") from e
    pools = entry.get("pools", ["*"])
    if not isinstance(pools, list) or not all(isinstance(p, str) and p for p in pools):
        raise PolicyError(f"{where}: pools must be a list of non-empty strings")
    limit = entry.get("max-pool-elements")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise PolicyError(f"{where}: max-pool-elements must be a non-negative integer")
    server = entry.get("server-identifier")
    if server is not None and (
        not isinstance(server, int) or isinstance(server, bool) or not 0 < server <= 0xFFFFFFFF
    ):
        raise PolicyError(f"{where}: server-identifier must be a non-zero 32-bit integer")
    return Grant(parsed, tuple(pools), limit, server)


def policy_granting(identities: Iterable[str], roles: Iterable[Role]) -> AuthorizationPolicy:
    """A policy giving exactly these identities these roles in every pool, and nobody else."""
    grant = Grant(frozenset(roles))
    return AuthorizationPolicy(dict.fromkeys(identities, grant), default=None)
