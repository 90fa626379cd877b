"""The IKEv2 message codec under its first name: every name of ``twisted_rserpool.ike.codec``.

The codec lives in the ``codec`` package, one module per payload family; this module
re-exports it so that ``from twisted_rserpool.ike.payloads import ...`` keeps working.
"""

from __future__ import annotations

from twisted_rserpool.ike import codec as _codec
from twisted_rserpool.ike.codec import *  # noqa: F403  # the one export list is codec's

__all__ = list(_codec.__all__)
