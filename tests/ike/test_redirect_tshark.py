"""Wireshark's dissector reads our REDIRECT notifies in all three exchanges.

In-memory redirects (IKE_SA_INIT, IKE_AUTH, gateway-initiated INFORMATIONAL) are written to
pcap files; tshark decrypts the protected ones with the IKE SA keys and must show the
gateway identity (IPv4, IPv6, FQDN) of each REDIRECT, the Nonce Data only in IKE_SA_INIT,
and the REDIRECTED_FROM that follows. Nothing is sent anywhere.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import requireTool
from tests.ike.test_redirect import CL, A, B, ByIdentity, Net, static
from tests.ike.test_tshark_decrypt import INTEGRITY_NAMES, encryption_name
from tests.tools.tshark import ike_packet, write_pcap
from twisted_rserpool.ike.redirect import StaticGateways, parse_gateway
from twisted_rserpool.ike.sa import IkeSa

pytestmark = pytest.mark.interop


def decode(tshark: str, net: Net, path: Path, sa: IkeSa | None = None) -> str:
    """tshark's verbose decode of everything the network carried (decrypted with ``sa``)."""
    packets = [
        ike_packet(data, src=s[0], dst=d[0], sport=s[1], dport=d[1])
        for s, d, data in net.log
        if ":" not in s[0] + d[0]
    ]
    write_pcap(path, packets)
    options: list[str] = []
    if sa is not None:
        keys, suite = sa.keys, sa.suite
        assert keys is not None and suite is not None
        row = ",".join(
            [
                sa.spi_i.hex(),
                sa.spi_r.hex(),
                keys.sk_ei.hex(),
                keys.sk_er.hex(),
                f'"{encryption_name(suite)}"',
                keys.sk_ai.hex(),
                keys.sk_ar.hex(),
                f'"{INTEGRITY_NAMES[suite.integrity]}"',
            ]
        )
        options = ["-o", f"uat:ikev2_decryption_table:{row}"]
    result = subprocess.run(
        [tshark, "-n", "-r", str(path), "-V", *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def redirect_blocks(text: str) -> list[str]:
    return [b for b in text.split("Payload: Notify (41)") if "REDIRECT (16407)" in b]


def test_tshark_reads_init_redirect(tmp_path: Path) -> None:
    """IKE_SA_INIT: REDIRECT with the IPv4 gateway and the client's Ni as Nonce Data, then
    REDIRECTED_FROM in the request to the new gateway."""
    tshark = requireTool("tshark")
    net = Net()
    net.add(A, policy=static("127.0.0.3", always=True))
    net.add(B)
    net.client.initiate(A, 0.0)
    net.pump()
    text = decode(tshark, net, tmp_path / "init.pcap")
    (block,) = redirect_blocks(text)
    assert "New Responder Gateway Identity (IPv4): 127.0.0.3" in block
    nonce = text.split("Nonce DATA: ", 1)[1].split("\n", 1)[0]
    assert f"Redirect Nonce Data: {nonce}" in block
    assert "REDIRECT_SUPPORTED (16406)" in text
    assert "Original Responder Gateway Identity (IPv4): 127.0.0.2" in text


def test_tshark_reads_auth_redirect(tmp_path: Path) -> None:
    """IKE_AUTH: the decrypted response carries IDr, AUTH and REDIRECT to an IPv6 gateway,
    without Nonce Data."""
    tshark = requireTool("tshark")
    net = Net()
    gw = net.add(
        A,
        policy=ByIdentity(
            StaticGateways([parse_gateway("2001:db8::3")]), always=True, in_auth=True
        ),
    )
    net.client.initiate(A, 0.0)
    net.pump(0.0, lambda s, d, data: None if s == CL and data[18] == 37 else data)
    (sa,) = list(gw)
    text = decode(tshark, net, tmp_path / "auth.pcap", sa)
    assert "Decrypted Data" in text and "incorrect" not in text
    (block,) = redirect_blocks(text)
    assert "New Responder Gateway Identity (IPv6): 2001:db8::3" in block
    assert "Redirect Nonce Data" not in block


def test_tshark_reads_informational_redirect(tmp_path: Path) -> None:
    """INFORMATIONAL: the gateway-initiated, decrypted REDIRECT names an FQDN and carries
    no Nonce Data."""
    tshark = requireTool("tshark")
    net = Net()
    gw = net.add(B)
    net.client.initiate(B, 0.0)
    net.pump()
    (sa,) = list(gw)
    assert gw.redirect(sa.local_spi, parse_gateway("vpn3.example.org"), 1.0)
    net.pump(1.0)
    text = decode(tshark, net, tmp_path / "informational.pcap", sa)
    assert "incorrect" not in text
    (block,) = redirect_blocks(text)
    assert "New Responder Gateway Identity (FQDN): vpn3.example.org" in block
    assert "Redirect Nonce Data" not in block
