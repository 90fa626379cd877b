"""Redirect targets (RFC 5685 gateway identities) as operators write them: IP addresses and
fully qualified DNS names only; a slip ("garbage", "::::", "10.0.0.256") is refused with a
reason, in --redirect-to, a --redirect-targets file (naming its line) and the admin API."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_rserpool.ike.redirect import MAX_NAME_LENGTH, parse_gateway
from twisted_rserpool.ike.reload import parseTargets


@pytest.mark.parametrize(
    ("text", "gateway"),
    [
        ("192.0.2.1", IPv4Address("192.0.2.1")),
        (" 2001:db8::1 ", IPv6Address("2001:db8::1")),
        ("vpn.example.org", "vpn.example.org"),
        ("vpn3.example.", "vpn3.example"),  # the root's dot dropped
        ("gw-2.Example.NET", "gw-2.Example.NET"),
        ("1gw.example", "1gw.example"),  # RFC 1123: a label may start with a digit
        ("localhost", "localhost"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_accepted(text: str, gateway: object) -> None:
    """Addresses of both families and host names, as given (without a trailing dot)."""
    assert parse_gateway(text) == gateway


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty gateway identity"),
        ("garbage", "a bare word"),
        ("::::", "'::::' is not an IPv6 address"),
        ("2001:db8::1::2", "not an IPv6 address"),
        ("10.0.0.256", "last label is all digits"),
        ("1.2.3", "last label is all digits"),
        ("a..example", "an empty label"),
        (".example", "an empty label"),
        ("-gw.example", "starts or ends with a hyphen"),
        ("gw-.example", "starts or ends with a hyphen"),
        ("gw_1.example", "a character other than letters, digits and hyphens"),
        ("bad name.example", "a character other than"),
        ("vpn.exämple", "a character other than"),
        ("a" * 64 + ".example", "a label of 64 characters"),
        (".".join(["a" * 63] * 4), f"longer than {MAX_NAME_LENGTH} characters"),
    ],
)
def test_refused(text: str, reason: str) -> None:
    """Everything else is a ValueError that says why."""
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")) as caught:
        parse_gateway(text)
    assert "\n" not in str(caught.value)


def test_targets_name_the_line() -> None:
    """A file of targets names the line of a bad entry; --redirect-to (one line) does not."""
    with pytest.raises(ValueError, match=r"^line 3: 'garbage' is neither"):
        parseTargets("vpn1.example=2\n# comment\nvpn2.example, garbage\n", numbered=True)
    with pytest.raises(ValueError, match=r"^'::::' is not an IPv6 address"):
        parseTargets("vpn1.example, ::::")
    with pytest.raises(ValueError, match=r"^line 1: the weight of vpn1.example must be"):
        parseTargets("vpn1.example=0", numbered=True)


@given(st.text(max_size=300))
def test_any_text_is_a_gateway_or_a_value_error(text: str) -> None:
    """Fuzzed text parses or is refused; what parses is an address or a host name that
    parses again to itself."""
    try:
        gateway = parse_gateway(text)
    except ValueError:
        return
    if isinstance(gateway, str):
        assert len(gateway) <= MAX_NAME_LENGTH and gateway.isascii()
        assert "." in gateway or gateway.lower() == "localhost"
        assert parse_gateway(gateway) == gateway
    else:
        assert ip_address(str(gateway)) == gateway


@given(
    st.lists(
        st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z", fullmatch=True),
        min_size=1,
        max_size=5,
    ),
    st.from_regex(r"\A[a-z]{2,10}\Z", fullmatch=True),
)
def test_host_names_are_accepted(labels: list[str], top: str) -> None:
    """Any name of well-formed labels under an alphabetic top-level label is accepted."""
    name = ".".join([*labels, top])
    assert parse_gateway(name) == name
