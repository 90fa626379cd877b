"""What one IKE SA does when time passes, without a clock: ``now`` comes in.

Its deadlines: retransmitting our requests, and giving up on the peer after the last try
(``twisted_rserpool.ike.window``); the expiry of incomplete IKE fragments; the half-open
timeout of a responder SA; a liveness check after ``IkeConfig.liveness_interval`` of
silence; the rekey every ``IkeConfig.rekey_interval`` (sooner again after a refusal); the
deletion of a redirected client's SA; and NAT-keepalives while we are behind a NAT
(``twisted_rserpool.ike.nat``). The endpoint asks ``next_deadline`` and calls ``on_timer``
then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted_rserpool.ike import nat
from twisted_rserpool.ike.state import State, StateEvent
from twisted_rserpool.ike.tasks import Task
from twisted_rserpool.ike.tasks.redirect import delete_redirected

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = ["SaTimers"]


class SaTimers:
    """The deadlines of one IKE SA (the SA's ``timers``); it logs as the SA."""

    def __init__(self, sa: IkeSa) -> None:
        self.sa = sa
        self.rekey_due: float | None = None
        """When the next scheduled rekey starts, or None."""

    def start_life(self, now: float) -> None:
        """The SA became usable at ``now``: schedule its rekey when configured, and its
        NAT-keepalives when we are behind a NAT."""
        sa = self.sa
        interval = sa.config.rekey_interval
        self.rekey_due = now + interval if interval is not None else None
        keepalive = sa.config.nat_keepalive_interval
        sa.keepalive_due = (
            now + keepalive if sa.local_behind_nat and keepalive is not None else None
        )

    def rekey_failed(self, now: float) -> None:
        """Our rekey was refused: try again after a while when rekeying on a schedule."""
        config = self.sa.config
        interval = config.rekey_interval
        if interval is not None:
            self.rekey_due = now + max(
                config.rekey_retry_min, interval * config.rekey_retry_fraction
            )

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must next run, or None."""
        sa = self.sa
        times: list[float] = []
        retransmit = sa.window.next_deadline()
        if retransmit is not None:
            times.append(retransmit)
        expiry = sa.inbound.next_deadline()
        if expiry is not None:
            times.append(expiry)
        state = sa.state
        if state == State.INIT_DONE:
            times.append(sa.half_open_deadline)
        if state == State.ESTABLISHED:
            if sa.window.idle and sa.config.liveness_interval is not None:
                times.append(sa.last_heard + sa.config.liveness_interval)
            if self.rekey_due is not None:
                times.append(self.rekey_due)
            if sa.redirect_delete_at is not None:
                times.append(sa.redirect_delete_at)
            if sa.keepalive_due is not None:
                times.append(sa.keepalive_due)
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        """Retransmit, give up, time out a half-open SA, check liveness, rekey, delete a
        redirected client's SA, or send a NAT-keepalive: whatever is due at ``now``."""
        sa = self.sa
        sa.inbound.expire(now)
        resend, given_up = sa.window.on_timer(now)
        if given_up:
            self._give_up(given_up[0].task, given_up[0].message_id, given_up[0].tries)
            return
        for request in resend:
            sa.log.debug(
                "retransmitting {kind} request {mid} to {peer} (try {tries})",
                kind=request.task.name,
                mid=request.message_id,
                peer=sa.peer_address,
                tries=request.tries,
            )
            for datagram in request.datagrams:
                sa.transmit(datagram)
        if sa.state == State.INIT_DONE and now >= sa.half_open_deadline:
            sa.log.info(
                "half-open IKE SA {spi} from {peer} timed out",
                spi=sa.spi_r.hex(),
                peer=sa.peer_address,
            )
            sa.fail("half-open timeout", None)
            return
        interval = sa.config.liveness_interval
        if (
            sa.state == State.ESTABLISHED
            and sa.window.idle
            and interval is not None
            and now >= sa.last_heard + interval
        ):
            sa.check_liveness(now)
        if self.rekey_due is not None and sa.state == State.ESTABLISHED and now >= self.rekey_due:
            self.rekey_due = None
            sa.rekey(now)
        if (
            sa.redirect_delete_at is not None
            and sa.state == State.ESTABLISHED
            and now >= sa.redirect_delete_at
        ):
            delete_redirected(sa)
            return
        if sa.state == State.ESTABLISHED:
            nat.send_keepalive(sa, now)
        sa.host.reschedule(sa)

    def _give_up(self, task: Task, message_id: int, tries: int) -> None:
        sa = self.sa
        sa.log.info(
            "no answer from {peer} to {kind} request {mid} after {tries} tries",
            peer=sa.peer_address,
            kind=task.name,
            mid=message_id,
            tries=tries,
        )
        if sa.state == State.ESTABLISHED:
            sa.close(StateEvent.DELETED, sa.deleted_event("peer unreachable"))
        elif sa.state == State.DELETING:
            reason = "rekeyed" if sa.rekeyed_to is not None else "deleted"
            sa.close(StateEvent.DELETED, sa.deleted_event(reason))
        else:
            sa.fail("no response from peer", None)
