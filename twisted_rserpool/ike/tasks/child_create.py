"""CHILD_SAs: the one of IKE_AUTH and CREATE_CHILD_SA (RFC 7296 sections 1.3, 2.9, 2.17).

The responder chooses an ESP proposal and narrows the traffic selectors
(``negotiate_child``, and ``answer_child`` for CREATE_CHILD_SA); the initiator checks that
the answer matches its offer (``child_response``). ``create_child_sa.respond`` routes each
CREATE_CHILD_SA request here or to ``rekey``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.child import (
    ChildSa,
    covers,
    narrow,
    selector_from_network,
    split_keymat,
)
from twisted_rserpool.ike.codec import (
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SecurityAssociationPayload,
    TrafficSelector,
    TsInitiatorPayload,
    TsResponderPayload,
)
from twisted_rserpool.ike.constants import ExchangeType, NotifyType
from twisted_rserpool.ike.events import ChildSaFailed
from twisted_rserpool.ike.proposals import (
    PROTO_ESP,
    ChildSuite,
    child_suite_from_proposal,
    select_child,
)
from twisted_rserpool.ike.tasks.common import (
    Refusal,
    find,
    from_payload,
    has_notify,
    key_pair,
    notifies,
    notify_name,
    to_payload,
    valid_nonce,
)

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = ["answer_child", "child_response", "make_child", "negotiate_child"]

log = Logger()

Selectors = tuple[TrafficSelector, ...]


def make_child(
    sa: IkeSa,
    suite: ChildSuite,
    inbound: bytes,
    outbound: bytes,
    ts_i: Selectors,
    ts_r: Selectors,
    transport: bool,
    *,
    nonces: tuple[bytes, bytes] | None = None,
    initiator: bool | None = None,
    shared_secret: bytes = b"",
) -> ChildSa:
    """A CHILD_SA with its KEYMAT; ``initiator`` says whether we began its exchange."""
    assert sa.keys is not None
    nonce_i, nonce_r = nonces or (sa.nonce_i, sa.nonce_r)
    keymat = crypto.derive_child_keymat(
        sa.keys.prf,
        sa.keys.sk_d,
        nonce_i=nonce_i,
        nonce_r=nonce_r,
        length=2 * suite.keymat_length,
        shared_secret=shared_secret,
    )
    enc_i, integ_i, enc_r, integ_r = split_keymat(keymat, suite)
    return ChildSa(
        sa.spi_i,
        sa.spi_r,
        sa.initiator if initiator is None else initiator,
        sa.local_address[0],
        sa.peer_address[0],
        inbound,
        outbound,
        suite,
        ts_i,
        ts_r,
        transport,
        enc_i,
        integ_i,
        enc_r,
        integ_r,
    )


def negotiate_child(
    sa: IkeSa,
    payloads: tuple[Payload, ...],
    sa_payload: SecurityAssociationPayload,
    exchange_nonces: tuple[bytes, bytes] | None = None,
    dh: tuple[int, bytes] | None = None,
) -> Refusal | tuple[ChildSa, list[Payload]]:
    """Responder of the exchange: choose an ESP proposal and narrow the selectors.

    ``exchange_nonces`` are (Ni, Nr) of a CREATE_CHILD_SA exchange (default: the IKE
    SA's, for IKE_AUTH); ``dh`` is (group, g^ir) when the request carried a KE payload.
    """
    config = sa.config
    tsi = find(payloads, TsInitiatorPayload)
    tsr = find(payloads, TsResponderPayload)
    if tsi is None or tsr is None:
        return Refusal(NotifyType.INVALID_SYNTAX, "CHILD_SA request without TSi/TSr")
    spi = config.random(4)
    selected = select_child(
        [from_payload(p) for p in sa_payload.proposals],
        config.child_suites,
        spi,
        dh[0] if dh is not None else None,
    )
    if selected is None:
        return Refusal(NotifyType.NO_PROPOSAL_CHOSEN, "no acceptable ESP proposal")
    chosen, suite = selected
    if config.address_pool is not None and not sa.virtual_ips:
        # RFC 7296 2.19: the client's selectors must be its leased address.
        return Refusal(NotifyType.FAILED_CP_REQUIRED, "CHILD_SA of a client without a virtual IP")
    # RFC 7296 2.9: narrow to our policy, and to at most the configured count (a subset
    # is a narrowing too); never a teardown. Only an offer wholly outside it is refused.
    limit = config.max_traffic_selectors
    # A client with virtual IPs (2.19) gets TSi narrowed to them, whatever it offered.
    peer_policy = (
        tuple(selector_from_network(f"{ip}/{ip.max_prefixlen}") for ip in sa.virtual_ips)
        if sa.virtual_ips and not sa.client
        else config.remote_ts
    )
    ts_i = narrow(tsi.selectors, peer_policy, limit)
    ts_r = narrow(tsr.selectors, config.local_ts, limit)
    if not ts_i or not ts_r:
        return Refusal(NotifyType.TS_UNACCEPTABLE, "traffic selectors unacceptable")
    if len(tsi.selectors) > limit or len(tsr.selectors) > limit:
        log.info(
            "CHILD_SA request from {peer} offers {count_i}/{count_r} traffic selectors: "
            "narrowed to {kept_i}/{kept_r} (max_traffic_selectors {limit})",
            peer=sa.peer_address,
            count_i=len(tsi.selectors),
            count_r=len(tsr.selectors),
            kept_i=len(ts_i),
            kept_r=len(ts_r),
            limit=limit,
        )
    transport = has_notify(payloads, NotifyType.USE_TRANSPORT_MODE)
    peer_spi = next(p.spi for p in sa_payload.proposals if p.number == chosen.number)
    child = make_child(
        sa,
        suite,
        spi,
        peer_spi,
        ts_i,
        ts_r,
        transport,
        nonces=exchange_nonces or (sa.nonce_i, sa.nonce_r),
        initiator=sa.initiator if exchange_nonces is None else False,
        shared_secret=dh[1] if dh is not None else b"",
    )
    answer: list[Payload] = []
    if transport:
        answer.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    answer += [
        SecurityAssociationPayload((to_payload(chosen),)),
        TsInitiatorPayload(ts_i),
        TsResponderPayload(ts_r),
    ]
    return child, answer


def child_response(
    sa: IkeSa,
    payloads: tuple[Payload, ...],
    spi: bytes,
    suites: tuple[ChildSuite, ...],
    offered_ts: tuple[Selectors, Selectors],
    nonce_i: bytes | None = None,
) -> ChildSa | None:
    """Initiator: install the CHILD_SA of the answer if it matches our offer.

    ``nonce_i`` is our Ni of a CREATE_CHILD_SA exchange (the answer must then carry Nr);
    without it the CHILD_SA is IKE_AUTH's, keyed with the IKE SA's nonces. Returns the new
    CHILD_SA, or None after reporting ChildSaFailed.
    """
    for notify in notifies(payloads):
        if notify.is_error:
            sa.host.emit(
                ChildSaFailed(
                    sa.spi_i,
                    sa.spi_r,
                    f"peer answered {notify_name(notify.notify_type)}",
                    notify.notify_type,
                )
            )
            return None
    sa_payload = find(payloads, SecurityAssociationPayload)
    tsi = find(payloads, TsInitiatorPayload)
    tsr = find(payloads, TsResponderPayload)
    if sa_payload is None or tsi is None or tsr is None or len(sa_payload.proposals) != 1:
        sa.host.emit(ChildSaFailed(sa.spi_i, sa.spi_r, "no CHILD_SA in the response"))
        return None
    nonces: tuple[bytes, bytes] | None = None
    if nonce_i is not None:
        nonce = find(payloads, NoncePayload)
        if nonce is None or not valid_nonce(nonce.data):
            sa.host.emit(ChildSaFailed(sa.spi_i, sa.spi_r, "no valid Nr in the response"))
            return None
        nonces = (nonce_i, nonce.data)
    proposal = sa_payload.proposals[0]
    suite = child_suite_from_proposal(from_payload(proposal))
    ts_i = tuple(t for t in tsi.selectors if isinstance(t, TrafficSelector))
    ts_r = tuple(t for t in tsr.selectors if isinstance(t, TrafficSelector))
    offered_i, offered_r = offered_ts
    if (
        suite is None
        or suite not in suites
        or proposal.protocol_id != PROTO_ESP
        or len(proposal.spi) != 4
        or not ts_i
        or not ts_r
        or not all(any(covers(o, t) for o in offered_i) for t in ts_i)
        or not all(any(covers(o, t) for o in offered_r) for t in ts_r)
    ):
        sa.host.emit(
            ChildSaFailed(sa.spi_i, sa.spi_r, "responder's CHILD_SA does not match our offer")
        )
        return None
    transport = has_notify(payloads, NotifyType.USE_TRANSPORT_MODE)
    child = make_child(
        sa,
        suite,
        spi,
        proposal.spi,
        ts_i,
        ts_r,
        transport,
        nonces=nonces,
        initiator=True if nonces is not None else None,
    )
    sa.add_child(child)
    return child


def answer_child(
    sa: IkeSa,
    message_id: int,
    payloads: tuple[Payload, ...],
    raw: bytes,
    nonces: tuple[bytes, bytes],
    refuse: Callable[[Refusal], None],
    old: ChildSa | None = None,
) -> None:
    """Responder: a new CHILD_SA (``old`` is the one it rekeys), or ``refuse`` with why.

    ``nonces`` are the exchange's (Ni, Nr); a KE payload in the request asks for PFS.
    """
    sa_payload = find(payloads, SecurityAssociationPayload)
    assert sa_payload is not None
    ke = find(payloads, KeyExchangePayload)
    exchange = ExchangeType.CREATE_CHILD_SA
    dh: tuple[int, bytes] | None = None
    our_ke: KeyExchangePayload | None = None
    if ke is not None:
        group = crypto.DH_GROUPS.get(ke.dh_group)
        if group is None:
            wanted = sa.suite.dh if sa.suite is not None else 0
            refuse(
                Refusal(
                    NotifyType.INVALID_KE_PAYLOAD,
                    f"KE group {ke.dh_group}",
                    int(wanted).to_bytes(2, "big"),
                )
            )
            return
        key = key_pair(ke.dh_group, sa.config.random)
        try:
            dh = (ke.dh_group, key.shared_secret(ke.data))
        except crypto.InvalidPublicValueError as e:
            refuse(Refusal(NotifyType.INVALID_SYNTAX, f"invalid KE data: {e}"))
            return
        our_ke = KeyExchangePayload(ke.dh_group, key.public_value)
    outcome = negotiate_child(sa, payloads, sa_payload, nonces, dh)
    if isinstance(outcome, Refusal):
        refuse(outcome)
        sa.host.emit(ChildSaFailed(sa.spi_i, sa.spi_r, outcome.reason, outcome.notify_type))
        return
    child, answer = outcome
    sa_index = next(i for i, p in enumerate(answer) if isinstance(p, SecurityAssociationPayload))
    extra: list[Payload] = [NoncePayload(nonces[1])]
    if our_ke is not None:
        extra.append(our_ke)
    answer[sa_index + 1 : sa_index + 1] = extra
    sa.respond(exchange, message_id, answer, raw)
    log.info(
        "CHILD_SA {spi} {what} with {peer}",
        spi=child.inbound_spi.hex(),
        what="rekeyed" if old is not None else "added",
        peer=sa.peer_address,
    )
    sa.add_child(child)
