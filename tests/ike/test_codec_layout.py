"""The codec is one package (twisted_rserpool.ike.codec); ike.payloads re-exports it."""

from __future__ import annotations

import importlib

import pytest

from twisted_rserpool.ike import codec, payloads

MODULES = [
    "base",
    "header",
    "security_association",
    "key_exchange",
    "identity",
    "notify",
    "traffic_selectors",
    "configuration",
    "encrypted",
    "chain",
    "message",
    "redirect",
    "framing",
]


def test_payloads_is_the_codec() -> None:
    assert set(payloads.__all__) == set(codec.__all__)
    for name in codec.__all__:
        assert getattr(payloads, name) is getattr(codec, name)


@pytest.mark.parametrize("name", MODULES)
def test_every_family_exported(name: str) -> None:
    module = importlib.import_module(f"twisted_rserpool.ike.codec.{name}")
    for exported in module.__all__:
        if exported != "IPAddress":  # a type alias of the selectors module only
            assert getattr(codec, exported) is getattr(module, exported)


def test_one_redirect_codec() -> None:
    """The endpoint's stateless IKE_SA_INIT redirect comes from the codec package."""
    from twisted_rserpool.ike import endpoint

    names = vars(endpoint)
    assert names["init_redirect_response"] is codec.init_redirect_response
    assert names["scan_init_for_redirect"] is codec.scan_init_for_redirect
    assert "_scan_for_redirect" not in names
