"""The vpngw status page in a real browser: headless Chromium loads the page of a real
``twistd -n vpngw --admin`` that holds an IKE SA of our initiator (with a virtual IP and a
CHILD_SA), has weighted redirect targets and drains; the page it rendered shows them all.
A screenshot is kept (beside the ENRP one: in the test's temporary directory)."""

from __future__ import annotations

import json
import urllib.request
from ipaddress import IPv4Address, ip_network
from pathlib import Path

import pytest
from twisted.trial.unittest import TestCase

from tests.conftest import requireTool
from tests.enrp.support import LOOPBACK
from tests.ike.vpngw_process import VpngwProcess, connect
from tests.support.chromium import PageText, renderedDom, screenshot
from twisted_rserpool.ike.child import any_selector, selector_from_network

pytestmark = pytest.mark.slow


class StatusPageTests(TestCase):
    """The page of a running gateway, as Chromium renders it."""

    timeout = 120

    async def test_status_page_in_headless_chromium(self) -> None:
        """The page lists the listen address, the client's IKE SA (identity, ESTABLISHED,
        its virtual IP, one CHILD_SA), the CHILD_SA's selectors, the targets 127.0.0.7
        (weight 3) and vpn2.example (weight 1), and that the gateway drains; no script."""
        binary = requireTool("chromium")
        directory = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        gateway = VpngwProcess(
            directory,
            extra=(
                "--redirect-to", "127.0.0.7=3,vpn2.example=1",
                "--address-pool", "10.77.0.0/24", "--subnet", "10.78.0.0/16",
            ),
        )  # fmt: skip
        gateway.start()
        self.addCleanup(gateway.stop)
        established = await connect(
            gateway,
            "client@test",
            "client-secret",
            childless="never",
            local_ts=(any_selector(4),),
            remote_ts=(selector_from_network("10.78.0.0/16"),),
            request_addresses=(IPv4Address("0.0.0.0"),),
        )
        [address] = established.virtual_ips
        assert address in ip_network("10.77.0.0/24")
        assert gateway.post("/drain", {"drain": True, "move": False})[0] == 200

        url = f"http://{LOOPBACK}:{gateway.adminPort}/"
        profile = directory / "chromium-profile"
        dom = renderedDom(binary, profile, url)
        parser = PageText()
        parser.feed(dom)
        assert parser.scripts == 0
        assert "IKE gateway gw@test" in dom and "twisted_rserpool" in dom
        [listen] = parser.classes["listen-address"]
        assert f"{LOOPBACK}:{gateway.ikePort}" in listen
        [sa] = parser.classes["ike-sa state-ESTABLISHED"]
        assert "client@test" in sa and str(address) in sa and "PSK" in sa
        assert established.spi_i.hex() in sa
        [child] = parser.classes["child-sa"]
        assert "10.78.0.0-10.78.255.255" in child and str(address) in child
        targets = parser.classes["redirect-target"]
        assert [t.replace(" ", "") for t in targets] == ["127.0.0.73", "vpn2.example1"]
        assert "This gateway is draining." in dom

        screenshot(binary, profile, url, directory / "vpngw-status.png")

        # The same URL without text/html in Accept (curl, the rserpool CLI) stays JSON.
        with urllib.request.urlopen(url, timeout=10) as reply:
            document = json.load(reply)
        assert document["draining"] is True and document["ike_sas"] == 1
