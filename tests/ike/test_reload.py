"""vpngw's reload (GatewayReloader, what SIGHUP runs): the secrets, EAP users, certificate,
CA and redirect target files are read again; what changed is logged without a secret; a
file that cannot be used keeps what was in force and says why in one line (in memory; the
real process and its SIGHUP are in test_reload_process.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twisted.logger import capturedLogs, formatEvent
from twisted.python import usage

from tests.ike.pki import IkePki
from tests.ike.test_gateway import FakeReactor
from twisted_rserpool._reload import ReloadOnSignal
from twisted_rserpool._tap import vpngw
from twisted_rserpool.ike.auth.eap import MsChapV2Authenticator
from twisted_rserpool.ike.config import Identity
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.gateway import IkeUdpService
from twisted_rserpool.ike.redirect import RedirectPolicy, StaticGateways
from twisted_rserpool.ike.reload import GatewayReloader, parseTargets

PKI = IkePki("reload CA")
OTHER = IkePki("other reload CA")


def gateway(*args: str) -> tuple[GatewayReloader, list[IkeEndpoint]]:
    """The reloader and the endpoints of ``twistd vpngw ARGS`` (built, not started)."""
    options = vpngw.Options()  # type: ignore[no-untyped-call]
    options.parseOptions(["--listen", "127.0.0.5,127.0.0.6", *args])  # type: ignore[no-untyped-call]
    service = vpngw.makeService(options, FakeReactor())
    children = list(service)  # type: ignore[call-overload]
    (hangUp,) = [c for c in children if isinstance(c, ReloadOnSignal)]
    endpoints = [c.protocol.endpoint for c in children if isinstance(c, IkeUdpService)]
    assert isinstance(hangUp.reloader, GatewayReloader) and len(endpoints) == 2
    return hangUp.reloader, endpoints


def reload(reloader: GatewayReloader) -> tuple[list[str], str]:
    """Run a reload; its log lines, and every event field as JSON (to look for secrets)."""
    with capturedLogs() as events:
        reloader.reload()
    return [formatEvent(e) for e in events], json.dumps(events, default=repr)


def certificateGateway(
    tmp_path: Path,
) -> tuple[GatewayReloader, list[IkeEndpoint], tuple[str, str, str, Path]]:
    """A gateway with a certificate for vpn.example, a client CA and the EAP user alice;
    its reloader, endpoints and files (certificate, key, CA, users)."""
    cert, key = PKI.write(tmp_path, "gw", PKI.issue("gw", dns=["vpn.example"]))
    ca = PKI.write_ca(tmp_path)
    users = tmp_path / "users"
    users.write_text('alice : EAP "alice-password"\n')
    users.chmod(0o600)  # vpngw refuses a key file others may read
    reloader, endpoints = gateway(
        "--certificate", cert, "--private-key", key, "--ca", ca,
        "--client-auth", "eap-mschapv2", "--eap-users", str(users),
    )  # fmt: skip
    return reloader, endpoints, (cert, key, ca, users)


def test_certificate_ca_and_eap_users_are_reloaded(tmp_path: Path) -> None:
    """A new certificate (same identity, new key), a CA added and an EAP user added are in
    force for both listen addresses after a reload; the log names the certificate's
    fingerprint, the CA subjects and the users, never the key or a password."""
    reloader, endpoints, (cert, key, ca, users) = certificateGateway(tmp_path)
    before = endpoints[0].config
    assert before.credentials is not None
    assert reloader.files == [str(users), cert, key, ca]

    PKI.write(tmp_path, "gw", PKI.issue("gw-renewed", dns=["vpn.example"]))
    Path(ca).write_bytes(
        Path(ca).read_bytes() + Path(OTHER.write_ca(tmp_path, "o.pem")).read_bytes()
    )
    users.write_text('alice : EAP "alice-password"\nbob : EAP "bob-password"\n')
    lines, everything = reload(reloader)

    after = endpoints[0].config
    assert endpoints[1].config is after and after is not before
    assert after.credentials is not None and after.trust is not None
    assert after.credentials.certificate.subject != before.credentials.certificate.subject
    assert len(after.trust.certificates) == 2
    assert isinstance(after.eap, MsChapV2Authenticator)
    assert after.eap.users.password(b"bob") == "bob-password"
    assert [line for line in lines if "certificate of CN=gw-renewed" in line and "replaced" in line]
    assert [line for line in lines if "added ['bob']" in line and "2 EAP users" in line]
    assert [line for line in lines if "2 CA certificates; added ['CN=other reload CA," in line]
    assert "bob-password" not in everything and "alice-password" not in everything
    assert "PRIVATE KEY" not in everything
    assert reloader.failures == 0 and after.psks == before.psks


def test_bad_files_keep_what_was_loaded(tmp_path: Path) -> None:
    """A certificate without the gateway's identity, an unreadable CA file and a users file
    with a bad line are each refused in one line that says why; the configuration in force
    stays, and a later good reload still works."""
    reloader, endpoints, (_cert, _key, ca, users) = certificateGateway(tmp_path)
    before = endpoints[0].config
    PKI.write(tmp_path, "gw", PKI.issue("gw-elsewhere", dns=["other.example"]))
    Path(ca).unlink()
    users.write_text("alice = alice-password\n")
    lines, _ = reload(reloader)
    assert endpoints[0].config is before and reloader.failures == 3
    kept = [line for line in lines if line.startswith("Reload: kept the previous")]
    assert len(kept) == 3 and all("\n" not in line for line in kept)
    assert any("certificate" in k and "vpn.example is not in the certificate" in k for k in kept)
    assert any("CA certificates" in k and "No such file or directory" in k for k in kept)
    assert any("EAP users" in k and f"{users}: line 1" in k for k in kept)

    PKI.write(tmp_path, "gw", PKI.issue("gw-back", dns=["vpn.example"]))
    PKI.write_ca(tmp_path)
    users.write_text('alice : EAP "alice-password"\n')
    lines, _ = reload(reloader)
    assert endpoints[0].config is not before and reloader.failures == 3
    assert reloader.reloads == 2


def test_secrets_and_redirect_targets_are_reloaded(tmp_path: Path) -> None:
    """An identity appended to --secrets and a target appended to --redirect-targets are in
    force after a reload (the weights too); a target file that does not parse keeps the
    targets in force; the secrets' keys never reach the log."""
    secrets = tmp_path / "secrets"
    secrets.write_text('old@test : "old-secret"\n')
    secrets.chmod(0o600)  # vpngw refuses a key file others may read
    targets = tmp_path / "targets"
    targets.write_text("# the gateways behind this one\n127.0.0.7=2\n")
    reloader, endpoints = gateway(
        "--secrets", str(secrets), "--redirect-targets", str(targets), "--redirect-max-sas", "9"
    )
    policy = endpoints[0].redirect_policy
    assert isinstance(policy, RedirectPolicy) and isinstance(policy.source, StaticGateways)
    assert [(str(g), w) for g, w in policy.source.weighted()] == [("127.0.0.7", 2)]

    secrets.write_text('old@test : "old-secret"\nnew@test : 0x6e6577\n')
    targets.write_text("127.0.0.7=2\n127.0.0.8=1, vpn3.example=1\n")
    lines, everything = reload(reloader)
    new = Identity.parse("new@test")
    assert all(e.config.psks.lookup(new) == b"new" for e in endpoints)
    assert [(str(g), w) for g, w in policy.source.weighted()] == [
        ("127.0.0.7", 2),
        ("127.0.0.8", 1),
        ("vpn3.example", 1),
    ]
    assert [line for line in lines if "added ['new@test']" in line]
    assert [line for line in lines if "added ['127.0.0.8', 'vpn3.example']" in line]
    assert "old-secret" not in everything and "6e6577" not in everything

    targets.write_text("127.0.0.9=0\n")
    secrets.write_text("no colon here\n")
    lines, _ = reload(reloader)
    assert [str(g) for g in policy.source.gateways()] == ["127.0.0.7", "127.0.0.8", "vpn3.example"]
    assert all(e.config.psks.lookup(new) == b"new" for e in endpoints)
    kept = [line for line in lines if "kept the previous" in line]
    assert len(kept) == 2
    assert any(
        "redirect targets" in k and "weight of 127.0.0.9 must be positive" in k for k in kept
    )
    assert any("pre-shared keys" in k and f"{secrets}: line 1" in k for k in kept)

    targets.write_text("vpn9.example\ngarbage\n")  # a word that is no host name
    lines, _ = reload(reloader)
    assert [str(g) for g in policy.source.gateways()] == ["127.0.0.7", "127.0.0.8", "vpn3.example"]
    assert [line for line in lines if f"redirect targets: {targets}: line 2: 'garbage'" in line]


def test_secrets_others_may_read_are_kept_out(tmp_path: Path) -> None:
    """A --secrets or --eap-users file that became readable by group or others is not read
    on reload: the keys in force stay, and one line says which mode and how to fix it."""
    reloader, endpoints, (_cert, _key, _ca, users) = certificateGateway(tmp_path)
    before = endpoints[0].config
    users.write_text('alice : EAP "alice-password"\nmallory : EAP "mallory-password"\n')
    users.chmod(0o644)
    lines, everything = reload(reloader)
    assert endpoints[0].config.eap is before.eap and reloader.failures == 1
    (kept,) = [line for line in lines if line.startswith("Reload: kept the previous EAP users")]
    assert f"{users}: mode 0644 lets group or others access the EAP passwords" in kept
    assert f"chmod 600 {users}" in kept and "mallory" not in everything

    secrets = tmp_path / "secrets"
    secrets.write_text('old@test : "old-secret"\n')
    secrets.chmod(0o600)
    reloader, endpoints = gateway("--secrets", str(secrets))
    before = endpoints[0].config
    secrets.write_text('old@test : "old-secret"\nnew@test : "new-secret"\n')
    secrets.chmod(0o604)
    lines, _ = reload(reloader)
    assert endpoints[0].config.psks is before.psks and reloader.failures == 1
    assert [
        line for line in lines if "kept the previous pre-shared keys" in line and "0604" in line
    ]


def test_generated_key_only_has_nothing_to_reload() -> None:
    """With a generated key (no --secrets) a reload reads no file and changes nothing."""
    reloader, endpoints = gateway()
    before = endpoints[0].config
    lines, _ = reload(reloader)
    assert reloader.files == [] and endpoints[0].config is before
    assert lines == ["Reload: no secrets, certificate or targets file to read again"]


def test_target_list_syntax() -> None:
    """Targets are separated by commas or lines; # starts a comment; weights are all or
    nothing (1 where left out once any is given)."""
    gateways, weights = parseTargets("a.example, 127.0.0.3 # first\n\n# none\n2001:db8::1")
    assert [str(g) for g in gateways] == ["a.example", "127.0.0.3", "2001:db8::1"]
    assert weights is None
    assert parseTargets("a.example=3\nb.example")[1] == [3, 1]
    for bad in ("a.example=x", "a.example=0", "not a name!"):
        try:
            parseTargets(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


POOL = ("--redirect-pool", "p", "--redirect-pool-enrp", "tcp:h:1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--redirect-targets", "/no/targets"), "--redirect-targets: /no/targets: No such file"),
        (("--redirect-targets", "{targets}", "--redirect-to", "127.0.0.7"), "give one of"),
        (("--redirect-targets", "{targets}", *POOL), "give one of"),
        (("--redirect-targets", "{bad}"), "--redirect-targets: .*bad: line 1: the weight of x"),
    ],
)
def test_redirect_targets_option_problems(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """--redirect-targets names a readable file of good targets, and no other target source."""
    (tmp_path / "targets").write_text("127.0.0.7\n")
    (tmp_path / "bad").write_text("x.example=none\n")
    values = {"targets": str(tmp_path / "targets"), "bad": str(tmp_path / "bad")}
    options = vpngw.Options()  # type: ignore[no-untyped-call]
    with pytest.raises(usage.UsageError, match=message):
        options.parseOptions([a.format(**values) for a in args])  # type: ignore[no-untyped-call]
