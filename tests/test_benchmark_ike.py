"""The IKE benchmark still runs: every authentication method against vpngw and charon for
a fraction of a second each, no timing asserted (needs root and strongSwan; run it under
``flock /tmp/strongswan.lock``)."""

from __future__ import annotations

import pytest

from benchmarks.ike import CASES, METHODS, init_responses, run, table
from tests.interop.test_strongswan import require_strongswan

pytestmark = [pytest.mark.slow, pytest.mark.interop]


def test_every_method_establishes() -> None:
    """IKE_SA_INIT responses (X25519) and handshakes with PSK, ECDSA and RSA certificates
    both ways and EAP-MSCHAPv2 complete with both gateways, none fails, and each side
    verified what the method says (vpngw's log, our initiator's IkeSaEstablished)."""
    require_strongswan()
    cases = [c for c in CASES if c.group == "x25519"]
    assert {c.method for c in cases if c.measure is not init_responses} == set(METHODS)
    results = run(cases, duration=0.3, warmup=0.2, window=4, rounds=1)
    for case in cases:
        for gateway in ("vpngw", "charon"):
            result = results[(gateway, case)]
            assert result.rate > 0 and result.failed == 0, (gateway, case)
            if case.measure is init_responses:
                continue
            method = case.method
            if method.gateway_key is None:
                assert result.verified == {"PSK"}, (gateway, result.verified)
                continue
            scheme = (
                "ecdsa-with-sha256" if method.gateway_key == "p256" else "sha256WithRSAEncryption"
            )
            gw = f"certificate CN=gw,O=twisted-rserpool tests ({scheme})"
            client = (
                f"certificate CN=client,O=twisted-rserpool tests ({scheme})"
                if method.client == "certificate"
                else "EAP-MSCHAPv2 alice"
            )
            # charon logs nothing: its configuration demands the client's method.
            expected = {gw, client} if gateway == "vpngw" else {gw}
            assert result.verified == expected, (gateway, method, result.verified)
    text = table(cases, results)
    assert "| handshakes | ECDSA P-256 certificate + EAP-MSCHAPv2 | x25519 |" in text
