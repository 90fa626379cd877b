"""The authorization policy: identities, roles, pool patterns and limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from twisted_rserpool.security.authorization import (
    GRANT_ALL,
    AuthorizationPolicy,
    Grant,
    PolicyError,
    Role,
    policy_granting,
)

POLICY_TEXT = """
[identities."pe-17"]
roles = ["pool-element"]
pools = ["echo", "counter-*"]
max-pool-elements = 4

[identities."enrp-2"]
roles = ["enrp-server"]

[default]
roles = ["pool-user"]
"""


def test_policy_file(tmp_path: Path) -> None:
    """A TOML policy grants roles per identity, pools by pattern, and a default."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TEXT)
    policy = AuthorizationPolicy.from_file(path)
    assert policy.may("pe-17", Role.POOL_ELEMENT, b"echo")
    assert policy.may("pe-17", Role.POOL_ELEMENT, b"counter-3")
    assert not policy.may("pe-17", Role.POOL_ELEMENT, b"other")
    assert not policy.may("pe-17", Role.ENRP_SERVER)
    assert policy.may("enrp-2", Role.ENRP_SERVER)
    assert policy.may("anyone", Role.POOL_USER, b"echo")
    assert not policy.may("anyone", Role.POOL_ELEMENT, b"echo")
    assert not policy.may(None, Role.POOL_USER, b"echo")
    assert policy.max_pool_elements("pe-17") == 4
    assert policy.max_pool_elements("anyone") is None


def test_without_default_unknown_identities_get_nothing() -> None:
    """With no [default], identities that are not listed are refused."""
    policy = AuthorizationPolicy.from_mapping({"identities": {"a": {"roles": ["pool-user"]}}})
    assert policy.may("a", Role.POOL_USER, b"x")
    assert not policy.may("b", Role.POOL_USER, b"x")


def test_default_policy_grants_everything_to_authenticated_identities() -> None:
    """No policy file: the pre-shared key is the authorization (RFC 5355 2.1)."""
    policy = AuthorizationPolicy()
    assert policy.grant_for("x") is GRANT_ALL
    assert policy.may("x", Role.ENRP_SERVER)
    assert not policy.may(None, Role.POOL_ELEMENT, b"echo")


def test_non_utf8_pool_handles_match_only_the_wildcard() -> None:
    """Binary pool handles match only '*'."""
    assert Grant(frozenset({Role.POOL_USER}), ("*",)).allows_pool(b"\xff\xfe")
    assert not Grant(frozenset({Role.POOL_USER}), ("?*",)).allows_pool(b"\xff\xfe")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[identities.a]\nroles = ['king']\n", "known roles"),
        ("[identities.a]\nroles = 'pool-user'\n", "list of strings"),
        ("[identities.a]\nroles = []\npools = ['']\n", "non-empty"),
        ("[identities.a]\nroles = []\nmax-pool-elements = -1\n", "non-negative"),
        ("[identities.a]\nrole = []\n", "unknown key"),
        ("[other]\n", "unknown section"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_policy_files(tmp_path: Path, text: str, message: str) -> None:
    """Every mistake in a policy file is refused with a reason."""
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        AuthorizationPolicy.from_file(path)


def test_missing_policy_file(tmp_path: Path) -> None:
    """A missing file is a PolicyError naming it."""
    with pytest.raises(PolicyError, match="cannot read"):
        AuthorizationPolicy.from_file(tmp_path / "nope.toml")


def test_policy_granting() -> None:
    """policy_granting lists exactly the given identities."""
    policy = policy_granting(["s1", "s2"], [Role.ENRP_SERVER])
    assert policy.may("s1", Role.ENRP_SERVER)
    assert not policy.may("s3", Role.ENRP_SERVER)
