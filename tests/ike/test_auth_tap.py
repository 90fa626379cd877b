"""``twistd vpngw`` authentication options: --certificate/--private-key, --ca,
--client-auth, --eap-users, --send-cert; their checks and the swanctl.conf it logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python import usage
from zope.interface import implementer

from tests.ike.pki import IkePki
from tests.ike.test_gateway import FakeReactor
from twisted_rserpool._tap import vpngw
from twisted_rserpool.ike.auth.eap import MsChapV2Authenticator, UsersFile
from twisted_rserpool.ike.config import Identity

PKI = IkePki("tap CA")


def parse(*args: str) -> vpngw.Options:
    options = vpngw.Options()  # type: ignore[no-untyped-call]
    options.parseOptions(list(args))  # type: ignore[no-untyped-call]
    return options


def files(tmp_path: Path, **sans: list[str]) -> tuple[str, str, str]:
    cert, key = PKI.write(tmp_path, "gw", PKI.issue("gw", **sans))  # type: ignore[arg-type]
    return cert, key, PKI.write_ca(tmp_path)


def hint_of(options: vpngw.Options) -> str:
    events: list[dict[str, Any]] = []

    @implementer(ILogObserver)
    def collect(event: dict[str, Any]) -> None:
        events.append(event)

    globalLogPublisher.addObserver(collect)
    try:
        vpngw.makeService(options, FakeReactor())
    finally:
        globalLogPublisher.removeObserver(collect)
    (hint,) = [e["hint"] for e in events if "hint" in e]
    lines = str(hint).splitlines()
    # One setting per line, as swanctl wants; compared here with the whitespace folded.
    assert all(line.count(" = ") <= 1 for line in lines), hint
    return " ".join(" ".join(lines).split())


def test_help_explains_the_auth_options() -> None:
    text = str(vpngw.Options())  # type: ignore[no-untyped-call]
    for option in (
        "--certificate",
        "--private-key",
        "--ca",
        "--client-auth",
        "--eap-users",
        "--send-cert",
        "--rsa-pss",
        "--max-eap-rounds",
    ):
        assert option in text
    assert "eap-mschapv2" in text and "CERTREQ" in text


def test_certificate_gateway_with_client_certificates(tmp_path: Path) -> None:
    """The identity comes from the certificate's dNSName; no key is generated; the config
    carries credentials, trust and the demand for client certificates; the logged
    swanctl.conf uses pubkey both ways."""
    cert, key, ca = files(tmp_path, dns=["vpn.example"])
    options = parse("--certificate", cert, "--private-key", key, "--ca", ca,
                    "--client-auth", "certificate", "--send-cert", "always")  # fmt: skip
    assert options["identity"] == Identity.parse("@vpn.example")
    assert options["generated_psk"] is None
    service = vpngw.makeService(options, FakeReactor())
    assert service is not None
    hint = hint_of(options)
    assert "local { auth = pubkey certs = client.pem" in hint
    assert "remote { auth = pubkey id = @vpn.example }" in hint
    assert "secret" not in hint


def test_eap_gateway(tmp_path: Path) -> None:
    cert, key, _ = files(tmp_path, dns=["vpn.example"])
    users = tmp_path / "users"
    users.write_text('# users\nalice : EAP "alice secret"\nbob : EAP hunter2\n')
    users.chmod(0o600)  # vpngw refuses a key file others may read
    options = parse("--certificate", cert, "--private-key", key, "--client-auth",
                    "eap-mschapv2", "--eap-users", str(users))  # fmt: skip
    assert isinstance(options["eap"], MsChapV2Authenticator)
    assert options["eap_users"] == UsersFile({b"alice": "alice secret", b"bob": "hunter2"})
    hint = hint_of(options)
    assert "local { auth = eap-mschapv2 eap_id = alice }" in hint
    assert "eap-vpngw { id = alice" in hint


def test_psk_gateway_still_generates_a_key() -> None:
    options = parse()
    assert options["credentials"] is None and options["generated_psk"] is not None
    hint = hint_of(options)
    assert options["generated_psk"] not in hint
    assert f'secret = "<the key in {options["generated_psk_file"]}>"' in hint


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--certificate", "{cert}"), "together"),
        (("--certificate", "{cert}", "--private-key", "{cert}"), "--certificate/--private-key"),
        (("--certificate", "{cert}", "--private-key", "{key}", "--identity", "@x.example"),
         "is not in the certificate"),
        (("--client-auth", "certificate"), "needs --ca"),
        (("--client-auth", "eap-mschapv2"), "needs --eap-users"),
        (("--client-auth", "radius"), "--client-auth must be"),
        (("--send-cert", "sometimes"), "--send-cert"),
        (("--ca", "{missing}"), "--ca"),
        (("--client-auth", "eap-mschapv2", "--eap-users", "{bad_users}"), "--eap-users: .*line 1"),
    ],
)  # fmt: skip
def test_refused(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    cert, key, _ = files(tmp_path, dns=["vpn.example"])
    bad_users = tmp_path / "bad"
    bad_users.write_text("alice = password\n")
    bad_users.chmod(0o600)  # vpngw refuses a key file others may read
    values = {
        "cert": cert,
        "key": key,
        "missing": str(tmp_path / "nope"),
        "bad_users": str(bad_users),
    }
    with pytest.raises(usage.UsageError, match=message):
        parse(*(a.format(**values) for a in args))


def test_users_file_format() -> None:
    users = UsersFile.parse('\n# c\n"carol" : EAP "pass word"\ndave:EAP x\n')
    assert users.password(b"carol") == "pass word" and users.password(b"dave") == "x"
    assert users.password(b"eve") is None
    for bad in ("eve : PSK x", "eve : EAP", ": EAP x", 'eve : EAP ""'):
        with pytest.raises(ValueError, match="line 1"):
            UsersFile.parse(bad)
