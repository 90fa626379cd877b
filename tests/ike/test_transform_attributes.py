"""RFC 7296 3.3.6: a transform with an attribute we do not understand, or a Key Length on a
transform type that takes none (PRF, INTEG, DH, ESN), is unacceptable; other transforms of
its type, and other proposals, are processed as usual."""

from __future__ import annotations

import os

import pytest

from tests.ike.test_sa import CL, Pair
from twisted_rserpool.ike.codec import (
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SecurityAssociationPayload,
    Transform,
    TransformAttribute,
    decode_message,
)
from twisted_rserpool.ike.config import DEFAULT_CHILD_SUITES, DEFAULT_IKE_SUITES
from twisted_rserpool.ike.constants import ExchangeType, NotifyType, TransformAttributeType
from twisted_rserpool.ike.crypto import DhGroupId, EncryptionId, IntegrityId, PrfId
from twisted_rserpool.ike.proposals import (
    DH,
    ENCR,
    ESN,
    INTEG,
    PRF,
    PROTO_ESP,
    PROTO_IKE,
    OfferedProposal,
    child_suite_from_proposal,
    select_child,
    select_ike,
    suite_from_proposal,
)
from twisted_rserpool.ike.tasks.common import UNACCEPTABLE_KEY_LENGTH, from_payload, key_pair

KL256 = TransformAttribute.key_length(256)
UNKNOWN_TV = TransformAttribute(15, 7)  # an attribute type RFC 7296 does not define
KL_AS_TLV = TransformAttribute(TransformAttributeType.KEY_LENGTH, b"\x01\x00")

GCM256 = Transform(ENCR, EncryptionId.AES_GCM_16, (KL256,))
SHA256 = Transform(PRF, PrfId.HMAC_SHA2_256)
X25519 = Transform(DH, DhGroupId.CURVE25519)


def _ike(number: int, *transforms: Transform) -> Proposal:
    return Proposal(number, PROTO_IKE, b"", transforms)


def _choose(*proposals: Proposal) -> tuple[OfferedProposal, object] | None:
    return select_ike([from_payload(p) for p in proposals], DEFAULT_IKE_SUITES)


@pytest.mark.parametrize(
    "bad",
    [
        Transform(PRF, PrfId.HMAC_SHA2_256, (KL256,)),  # Key Length on a PRF
        Transform(PRF, PrfId.HMAC_SHA2_256, (UNKNOWN_TV,)),
    ],
    ids=["prf-key-length", "prf-unknown-attribute"],
)
def test_bad_prf_makes_its_proposal_unacceptable(bad: Transform) -> None:
    """The only PRF carrying an attribute it takes none of: the proposal is refused, and a
    later clean proposal is chosen instead."""
    assert from_payload(_ike(1, GCM256, bad, X25519)).transforms[1].key_length == (
        UNACCEPTABLE_KEY_LENGTH
    )
    assert _choose(_ike(1, GCM256, bad, X25519)) is None
    chosen = _choose(_ike(1, GCM256, bad, X25519), _ike(2, GCM256, SHA256, X25519))
    assert chosen is not None and chosen[0].number == 2


@pytest.mark.parametrize(
    "bad",
    [
        Transform(DH, DhGroupId.CURVE25519, (KL256,)),
        Transform(INTEG, IntegrityId.HMAC_SHA2_256_128, (KL256,)),
        Transform(ENCR, EncryptionId.AES_CBC, (KL256, UNKNOWN_TV)),
        Transform(ENCR, EncryptionId.AES_CBC, (KL_AS_TLV,)),
        Transform(ENCR, EncryptionId.AES_CBC, (KL256, KL256)),
    ],
    ids=["dh-key-length", "integ-key-length", "encr-unknown", "encr-tlv", "encr-two-lengths"],
)
def test_other_transforms_of_the_type_still_count(bad: Transform) -> None:
    """An unacceptable transform is skipped; another one of its type is taken."""
    cbc = Transform(ENCR, EncryptionId.AES_CBC, (KL256,))
    integ = Transform(INTEG, IntegrityId.HMAC_SHA2_256_128)
    by_type = {ENCR: cbc, INTEG: integ, PRF: SHA256, DH: X25519}
    alone = _ike(1, *({**by_type, bad.transform_type: bad}.values()))
    assert _choose(alone) is None
    both = _ike(1, bad, *by_type.values())
    chosen = _choose(both)
    assert chosen is not None
    (answer,) = [t for t in chosen[0].transforms if t.type == bad.transform_type]
    assert answer.key_length != UNACCEPTABLE_KEY_LENGTH


def test_esn_with_an_attribute_is_unacceptable() -> None:
    """ESP: an ESN transform with a Key Length is refused; without it the proposal is fine."""
    spi = b"\x00\x00\x00\x01"
    good_esn = Transform(ESN, 1)
    bad_esn = Transform(ESN, 1, (KL256,))
    bad = Proposal(1, PROTO_ESP, spi, (GCM256, bad_esn))
    good = Proposal(2, PROTO_ESP, spi, (GCM256, good_esn))
    ours = b"\x00\x00\x00\x02"
    assert select_child([from_payload(bad)], DEFAULT_CHILD_SUITES, ours) is None
    chosen = select_child([from_payload(bad), from_payload(good)], DEFAULT_CHILD_SUITES, ours)
    assert chosen is not None and chosen[0].number == 2


def test_answers_with_attributes_we_never_send_are_refused() -> None:
    """An initiator does not take an answer whose PRF or ESN carries an attribute."""
    assert suite_from_proposal(from_payload(_ike(1, GCM256, SHA256, X25519))) is not None
    bad_prf = Transform(PRF, PrfId.HMAC_SHA2_256, (KL256,))
    assert suite_from_proposal(from_payload(_ike(1, GCM256, bad_prf, X25519))) is None
    cbc_no_length = Transform(ENCR, EncryptionId.AES_CBC)
    integ = Transform(INTEG, IntegrityId.HMAC_SHA2_256_128)
    assert suite_from_proposal(from_payload(_ike(1, cbc_no_length, SHA256, integ, X25519))) is None
    esp = Proposal(1, PROTO_ESP, b"\0\0\0\1", (GCM256, Transform(ESN, 0, (UNKNOWN_TV,))))
    assert child_suite_from_proposal(from_payload(esp)) is None


def test_gateway_answers_no_proposal_chosen() -> None:
    """A default gateway answers an IKE_SA_INIT whose only proposal has a PRF with a Key
    Length with NO_PROPOSAL_CHOSEN and keeps no state (it accepted it before)."""
    bad = _ike(1, GCM256, Transform(PRF, PrfId.HMAC_SHA2_256, (KL256,)), X25519)
    pair = Pair()
    key = key_pair(DhGroupId.CURVE25519, os.urandom)
    payloads = (
        SecurityAssociationPayload((bad,)),
        KeyExchangePayload(DhGroupId.CURVE25519, key.public_value),
        NoncePayload(os.urandom(32)),
    )
    request = IkeMessage(
        os.urandom(8), bytes(8), ExchangeType.IKE_SA_INIT, 0, payloads, initiator=True
    )
    pair.gw.receive_datagram(request.encode(), CL, 0.0)
    (response,) = [decode_message(d) for d, _ in pair.gw.datagrams_to_send()]
    assert [type(p) for p in response.payloads] == [NotifyPayload]
    assert response.notify(NotifyType.NO_PROPOSAL_CHOSEN) is not None
    assert len(pair.gw) == 0
