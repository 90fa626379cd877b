"""Rekeying (RFC 7296 sections 1.3.2, 1.3.3, 2.8, 2.18).

The IKE SA: ``IkeRekey`` sends SA (with our new SPI), Ni and KEi in CREATE_CHILD_SA,
follows INVALID_KE_PAYLOAD up to ``max_rekey_attempts`` sends, and makes the successor
SA; ``respond_ike_rekey`` is the responder. Either way the successor takes the CHILD_SAs
and the old SA is deleted by the side that started the rekey.

A CHILD_SA: ``ChildRekey`` sends N(REKEY_SA) with the old SA's inbound SPI, SA, Ni and
the old SA's traffic selectors (no KE: no PFS for a rekey we start), installs the new
CHILD_SA and deletes the old one. As responder, a CHILD_SA named by N(REKEY_SA) is
answered as a new CHILD_SA (``rekeyed_child`` finds the old one, ``child_create.respond``
or a PFS KE included); the initiator deletes the old one afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.child import ChildSa
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
from twisted_rserpool.ike.constants import ExchangeType, NotifyType, ProtocolId
from twisted_rserpool.ike.events import ChildSaDeleted
from twisted_rserpool.ike.proposals import (
    IkeSuite,
    OfferedProposal,
    child_proposal,
    ike_proposal,
    select_ike,
    suite_from_proposal,
)
from twisted_rserpool.ike.state import State
from twisted_rserpool.ike.tasks import Task
from twisted_rserpool.ike.tasks.child_create import child_response
from twisted_rserpool.ike.tasks.common import (
    ZERO_SPI,
    Refusal,
    find,
    from_payload,
    key_pair,
    notifies,
    notify_name,
    to_payload,
    valid_nonce,
)
from twisted_rserpool.ike.tasks.informational import DeleteChild
from twisted_rserpool.ike.window import Outstanding

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = ["ChildRekey", "IkeRekey", "rekeyed_child", "respond_ike_rekey"]

log = Logger()


class IkeRekey(Task):
    """Initiator of an IKE SA rekey: the new SPI, Ni and DH key we sent."""

    exchange = ExchangeType.CREATE_CHILD_SA
    name = "rekey"

    def __init__(self, sa: IkeSa, group: int | None = None, attempt: int = 1) -> None:
        super().__init__(sa)
        assert sa.suite is not None
        self.group = group if group is not None else sa.suite.dh
        self.attempt = attempt
        self.spi = b""
        self.nonce = b""
        self.key: crypto.DhPrivateKey | None = None

    def build(self, now: float) -> Sequence[Payload] | None:
        sa = self.sa
        if sa.state != State.ESTABLISHED:
            return None
        assert sa.suite is not None
        current = sa.suite
        group = self.group
        ordered = [current, *(s for s in sa.config.offered_ike_suites if s != current)]
        suites = [s for s in ordered if s.dh == group] + [s for s in ordered if s.dh != group]
        self.spi = sa.host.new_spi()
        self.nonce = sa.config.random(sa.config.nonce_length)
        self.key = key_pair(group, sa.config.random)
        return (
            SecurityAssociationPayload(
                tuple(to_payload(p) for p in ike_proposal(suites, self.spi))
            ),
            NoncePayload(self.nonce),
            KeyExchangePayload(group, self.key.public_value),
        )

    def _failed(self, reason: str, now: float) -> None:
        sa = self.sa
        log.info(
            "rekey of IKE SA {spi_i}/{spi_r} failed: {reason}",
            spi_i=sa.spi_i.hex(),
            spi_r=sa.spi_r.hex(),
            reason=reason,
        )
        sa.rekey_failed(now)

    def process(
        self, payloads: tuple[Payload, ...], request: Outstanding[Task], now: float
    ) -> None:
        """Our IKE SA rekey was answered: make the new SA, then delete this one."""
        sa = self.sa
        config = sa.config
        assert sa.keys is not None and self.key is not None
        for notify in notifies(payloads):
            if notify.notify_type == NotifyType.INVALID_KE_PAYLOAD and len(notify.data) >= 2:
                wanted = int.from_bytes(notify.data[:2], "big")
                groups = {s.dh for s in config.offered_ike_suites}
                if (
                    wanted in groups
                    and wanted != self.group
                    and self.attempt < config.max_rekey_attempts
                ):
                    sa.queue(IkeRekey(sa, wanted, self.attempt + 1), now)
                    return
            if notify.is_error:
                self._failed(f"peer answered {notify_name(notify.notify_type)}", now)
                return
        sa_payload = find(payloads, SecurityAssociationPayload)
        nonce = find(payloads, NoncePayload)
        ke = find(payloads, KeyExchangePayload)
        if sa_payload is None or nonce is None or ke is None or len(sa_payload.proposals) != 1:
            self._failed("answer lacks SA, Nr or KEr", now)
            return
        proposal = sa_payload.proposals[0]
        suite = suite_from_proposal(from_payload(proposal))
        if (
            suite is None
            or suite not in config.ike_suites
            or suite.dh != self.group
            or ke.dh_group != self.group
            or proposal.protocol_id != ProtocolId.IKE
            or len(proposal.spi) != 8
            or proposal.spi == ZERO_SPI
            or not valid_nonce(nonce.data)
        ):
            self._failed("answer does not match our offer", now)
            return
        try:
            shared = self.key.shared_secret(ke.data)
        except crypto.InvalidPublicValueError as e:
            self._failed(f"invalid KE data: {e}", now)
            return
        skeyseed = sa.keys.prf(sa.keys.sk_d, shared + self.nonce + nonce.data)
        _hand_over(sa, True, self.spi, proposal.spi, suite, skeyseed, self.nonce, nonce.data, now)
        sa.delete(now)


class ChildRekey(Task):
    """Initiator of a CHILD_SA rekey: the new SPI and Ni we sent for ``old``."""

    exchange = ExchangeType.CREATE_CHILD_SA
    name = "rekey child"

    def __init__(self, sa: IkeSa, old: ChildSa) -> None:
        super().__init__(sa)
        self.old = old
        self.spi = b""
        self.nonce = b""

    def _selectors(self) -> tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]]:
        """(TSi, TSr) of this exchange: the old CHILD_SA's, seen from us as initiator."""
        old = self.old
        return (old.ts_i, old.ts_r) if old.initiator else (old.ts_r, old.ts_i)

    def build(self, now: float) -> Sequence[Payload] | None:
        sa = self.sa
        old = self.old
        if sa.state != State.ESTABLISHED or sa.children.get(old.inbound_spi) is not old:
            return None  # deleted (by either side) while the request waited
        config = sa.config
        self.spi = config.random(4)
        self.nonce = config.random(config.nonce_length)
        ts_i, ts_r = self._selectors()
        payloads: list[Payload] = [
            NotifyPayload(NotifyType.REKEY_SA, protocol_id=ProtocolId.ESP, spi=old.inbound_spi)
        ]
        if old.transport_mode:
            payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        payloads += [
            SecurityAssociationPayload(
                tuple(to_payload(p) for p in child_proposal(config.offered_child_suites, self.spi))
            ),
            NoncePayload(self.nonce),
            TsInitiatorPayload(ts_i),
            TsResponderPayload(ts_r),
        ]
        return payloads

    def process(
        self, payloads: tuple[Payload, ...], request: Outstanding[Task], now: float
    ) -> None:
        """The new CHILD_SA is up: delete the old one (RFC 7296 section 2.8)."""
        sa = self.sa
        new = child_response(
            sa, payloads, self.spi, sa.config.offered_child_suites, self._selectors(), self.nonce
        )
        if new is None:
            return
        old = self.old
        log.info(
            "CHILD_SA {old} rekeyed to {new} with {peer}",
            old=old.inbound_spi.hex(),
            new=new.inbound_spi.hex(),
            peer=sa.peer_address,
        )
        if sa.children.get(old.inbound_spi) is old:
            sa.remove_child(old)
            sa.host.emit(ChildSaDeleted(old, by_peer=False))
            sa.queue(DeleteChild(sa, ProtocolId.ESP, (old.inbound_spi,)), now)


def _hand_over(
    sa: IkeSa,
    initiator: bool,
    spi_i: bytes,
    spi_r: bytes,
    suite: IkeSuite,
    skeyseed: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    now: float,
) -> None:
    new = sa.successor(
        initiator=initiator,
        spi_i=spi_i,
        spi_r=spi_r,
        suite=suite,
        skeyseed=skeyseed,
        nonces=(nonce_i, nonce_r),
        now=now,
    )
    log.info(
        "IKE SA {old_i}/{old_r} rekeyed to {new_i}/{new_r} ({suite})",
        old_i=sa.spi_i.hex(),
        old_r=sa.spi_r.hex(),
        new_i=new.spi_i.hex(),
        new_r=new.spi_r.hex(),
        suite=str(suite),
    )


def respond_ike_rekey(
    sa: IkeSa,
    message_id: int,
    sa_payload: SecurityAssociationPayload,
    nonce_i: bytes,
    nonce_r: bytes,
    ke: KeyExchangePayload | None,
    raw: bytes,
) -> Refusal | None:
    """Responder of an IKE SA rekey; the refusal to send, or None when answered."""
    assert sa.keys is not None
    config = sa.config
    offered = [from_payload(p) for p in sa_payload.proposals if len(p.spi) == 8]
    group_id = ke.dh_group if ke is not None else None
    selected = select_ike(offered, config.ike_suites, prefer_dh=group_id)
    if selected is None:
        return Refusal(NotifyType.NO_PROPOSAL_CHOSEN, "no acceptable IKE proposal for the rekey")
    chosen, suite = selected
    if ke is None or ke.dh_group != suite.dh:
        return Refusal(
            NotifyType.INVALID_KE_PAYLOAD,
            f"rekey KE group {group_id}",
            int(suite.dh).to_bytes(2, "big"),
        )
    key = key_pair(suite.dh, config.random)
    try:
        shared = key.shared_secret(ke.data)
    except crypto.InvalidPublicValueError as e:
        return Refusal(NotifyType.INVALID_SYNTAX, f"invalid KE data: {e}")
    peer_spi = next(p.spi for p in offered if p.number == chosen.number)
    spi_r = sa.host.new_spi()
    # SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), with the old SA's PRF.
    skeyseed = sa.keys.prf(sa.keys.sk_d, shared + nonce_i + nonce_r)
    answer_proposal = OfferedProposal(chosen.number, chosen.protocol, spi_r, chosen.transforms)
    sa.respond(
        ExchangeType.CREATE_CHILD_SA,
        message_id,
        [
            SecurityAssociationPayload((to_payload(answer_proposal),)),
            NoncePayload(nonce_r),
            KeyExchangePayload(suite.dh, key.public_value),
        ],
        raw,
    )
    _hand_over(sa, False, peer_spi, spi_r, suite, skeyseed, nonce_i, nonce_r, sa.last_heard)
    return None


def rekeyed_child(sa: IkeSa, payloads: tuple[Payload, ...]) -> ChildSa | Refusal | None:
    """The CHILD_SA that N(REKEY_SA) names, None without one, or the refusal if unknown."""
    notify = next(
        (
            n
            for n in notifies(payloads)
            if n.notify_type == NotifyType.REKEY_SA and n.protocol_id == ProtocolId.ESP
        ),
        None,
    )
    if notify is None:
        return None
    old = sa.child_by_outbound(notify.spi)
    if old is None:
        return Refusal(NotifyType.CHILD_SA_NOT_FOUND, "rekey of an unknown CHILD_SA")
    return old
