"""One delayed call kept at the next deadline of a sans-IO core (the Twisted adapters' timer)."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class DeadlineTimer:
    """Calls ``fire`` once at the deadline last given to :meth:`arm` (none pending if None).

    Adapters call :meth:`arm` with their core's ``next_deadline()`` after every input, and
    their ``fire`` runs the core's ``handle_timer``. A deadline already past fires at once.
    """

    __slots__ = ("_call", "_fire")

    def __init__(self, fire: Callable[[], None]) -> None:
        self._fire = fire
        self._call: IDelayedCall | None = None

    @property
    def pending(self) -> bool:
        """Whether a call is scheduled."""
        return self._call is not None

    def arm(self, clock: IReactorTime, deadline: float | None) -> None:
        """Schedule the call for ``deadline`` (replacing any earlier one), or none."""
        self.cancel()
        if deadline is not None:
            self._call = clock.callLater(max(0.0, deadline - clock.seconds()), self._fired)

    def cancel(self) -> None:
        """Forget the scheduled call, if any."""
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _fired(self) -> None:
        self._call = None
        self._fire()
