"""The live demo (``python -m twisted_rserpool.asap.demo``) runs and shows what it promises."""

from __future__ import annotations

import io

import pytest
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from twisted_rserpool.asap.demo import runDemo

pytestmark = pytest.mark.slow


class LiveDemoTests(TestCase):
    """The demo with real processes."""

    timeout = 90

    async def test_demo_shows_the_failover_with_both_contexts(self) -> None:
        """The demo registers three PEs, counts through a session, kills the PE with
        SIGKILL, prints the failover notification with both security contexts, and the
        count continues from the cookie."""
        out = io.StringIO()
        status = await runDemo(reactor, out)
        text = out.getvalue()
        assert status == 0, text
        assert text.count("registered, serving on 127.0.0.1:") == 3
        assert "kill -9 pe-" in text
        assert "FAILOVER NOTIFICATION #1" in text
        assert "old security: TLSv1.3" in text and "new security: TLSv1.3" in text
        assert "incr -> 4 pe-" in text
        assert "demo succeeded" in text
