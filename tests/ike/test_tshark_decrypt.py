"""Wireshark's IKEv2 dissector decrypts our SK payloads and verifies their ICVs.

An in-memory handshake (IKE_AUTH with a CHILD_SA, a liveness check, a Delete) is written to
a pcap file; tshark gets the IKE SA keys through its ``ikev2_decryption_table`` and must
decrypt every protected message, find the identities inside, and call every ICV correct.
Nothing is sent anywhere.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import requireTool
from tests.ike.test_sa import CL, GW, Pair, config
from tests.tools.tshark import ike_packet, write_pcap
from twisted_rserpool.ike.crypto import EncryptionId, IntegrityId
from twisted_rserpool.ike.proposals import IkeSuite, parse_ike_suites

pytestmark = pytest.mark.interop

INTEGRITY_NAMES = {
    None: "NONE [RFC4306]",
    IntegrityId.HMAC_SHA2_256_128: "HMAC_SHA2_256_128 [RFC4868]",
    IntegrityId.HMAC_SHA2_384_192: "HMAC_SHA2_384_192 [RFC4868]",
    IntegrityId.HMAC_SHA2_512_256: "HMAC_SHA2_512_256 [RFC4868]",
}


def encryption_name(suite: IkeSuite) -> str:
    if suite.encryption == EncryptionId.AES_GCM_16:
        return f"AES-GCM-{suite.key_bits} with 16 octet ICV [RFC5282]"
    return f"AES-CBC-{suite.key_bits} [RFC3602]"


@pytest.mark.parametrize(
    "name",
    [
        "aes128-sha256-x25519",
        "aes256-sha512-prfsha384-ecp384",
        "aes256-sha384-modp2048",
        "aes128gcm16-prfsha256-ecp256",
        "aes256gcm16-prfsha512-x25519",
    ],
)
def test_tshark_decrypts_our_messages(name: str, tmp_path: Path) -> None:
    """tshark decrypts all six protected messages of a handshake with our keys, shows the
    identities inside, and finds every integrity checksum (HMAC or GCM tag) correct."""
    tshark = requireTool("tshark")
    (suite,) = parse_ike_suites(name)
    pair = Pair(config("gw@test", ike_suites=(suite,)), config("client@test", ike_suites=(suite,)))
    spi = pair.establish()
    sa = pair.cl.get(spi)
    assert sa is not None and sa.keys is not None
    keys, spi_r = sa.keys, sa.spi_r
    pair.cl.check_liveness(spi, 1.0)
    pair.pump(1.0)
    pair.cl.delete_ike_sa(spi, 2.0)
    pair.pump(2.0)
    packets = []
    for sender, data in pair.sent:
        (src, dst) = (CL, GW) if sender == "cl" else (GW, CL)
        packets.append(ike_packet(data, src=src[0], dst=dst[0], sport=src[1], dport=dst[1]))
    capture = tmp_path / "ike.pcap"
    write_pcap(capture, packets)
    assert pair.cl.get(spi) is None and len(pair.gw) == 0
    row = ",".join(
        [
            spi.hex(),
            spi_r.hex(),
            keys.sk_ei.hex(),
            keys.sk_er.hex(),
            f'"{encryption_name(suite)}"',
            keys.sk_ai.hex(),
            keys.sk_ar.hex(),
            f'"{INTEGRITY_NAMES[suite.integrity]}"',
        ]
    )
    result = subprocess.run(
        [tshark, "-n", "-r", str(capture), "-V", "-o", f"uat:ikev2_decryption_table:{row}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = result.stdout
    assert len(packets) == 8  # IKE_SA_INIT x2, IKE_AUTH x2, liveness x2, Delete x2
    assert text.count("Decrypted Data") == 6
    assert "Identification Data:client@test" in text
    assert "Identification Data:gw@test" in text
    assert text.count("[correct]") == 6 and "incorrect" not in text
