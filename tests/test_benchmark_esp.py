"""The ESP tunnel benchmark still runs: both gateways carry a ping and 1 MiB each way
through the tunnel, the gateway's CPU is read, no timing asserted (needs root, strongSwan
with kernel-libipsec and /dev/net/tun; run it under ``flock /tmp/strongswan.lock``)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.esp import GATEWAYS, Result, run, table
from tests.interop.tunnel_support import require_tunnel_tools

pytestmark = [pytest.mark.slow, pytest.mark.interop]


def test_both_gateways_carry_traffic() -> None:
    require_tunnel_tools()
    args = argparse.Namespace(size=1, pings=2, rounds=1)
    results = run(args, suites=("aes128gcm16",))
    for which in GATEWAYS:
        result = results[("aes128gcm16", which)]
        assert result.down > 0 and result.up > 0, which
        assert 0 < result.ping_avg < float("inf"), which
        assert result.down_cpu >= 0 and result.up_cpu >= 0, which
    assert "vpngw / strongSwan" in table(results)


def test_ratio_of_nothing_measured() -> None:
    """A gateway whose CPU time rounds to zero in a short run gives '-', not a crash."""
    quiet = Result(ping_avg=1.0, ping_min=1.0, down=100.0, up=100.0, down_cpu=0.0, up_cpu=0.0)
    busy = Result(ping_avg=1.0, ping_min=1.0, down=100.0, up=100.0, down_cpu=0.1, up_cpu=0.1)
    text = table({("aes128gcm16", "vpngw"): busy, ("aes128gcm16", "strongswan"): quiet})
    assert "| aes128gcm16 | vpngw / strongSwan | 1.00 | 1.00 | 1.00 | - | - |" in text
