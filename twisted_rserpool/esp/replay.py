"""The anti-replay window of an inbound SA (RFC 4303 3.4.3 and appendix A2), without I/O.

``check`` is the preliminary test, done before any cryptography: it infers the full sequence
number (with ESN, the high-order 32 bits that are not transmitted, appendix A2.2) and rejects
duplicates and packets left of the window. ``accept`` moves the window, and is called only
after the ICV verified (3.4.3: "The receive window is updated only if the integrity
verification succeeds"). The window is a bitmap: bit ``i`` stands for sequence number
``T - i``, where ``T`` is the highest authenticated one.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["DEFAULT_WINDOW", "MIN_WINDOW", "ReplayVerdict", "ReplayWindow"]

MIN_WINDOW = 64
"""The smallest window we allow (RFC 4303 3.4.3: 32 is the minimum, 64 the default)."""

DEFAULT_WINDOW = 64
"""The default window, RFC 4303's SHOULD."""

_M32 = 0xFFFFFFFF
_MAX_WINDOW = 1 << 31  # appendix A2 assumes at most 2^31


class ReplayVerdict(Enum):
    """Why the preliminary check rejected a sequence number."""

    DUPLICATE = "replay"
    """Inside the window and already received."""
    TOO_OLD = "too_old"
    """Left of the window (or, with ESN, before the SA's first sequence number)."""


class ReplayWindow:
    """A sliding window of ``size`` sequence numbers, 32-bit or extended (``esn``)."""

    __slots__ = ("_bitmap", "_mask", "esn", "highest", "size")

    def __init__(self, size: int = DEFAULT_WINDOW, esn: bool = False) -> None:
        if not MIN_WINDOW <= size <= _MAX_WINDOW:
            raise ValueError(f"anti-replay window of {size}: at least {MIN_WINDOW}")
        self.size = size
        self.esn = esn
        self.highest = 0
        """T: the highest authenticated sequence number (0: none yet)."""
        # Bit 0 stands for sequence number 0, which no sender uses (RFC 4303 3.3.3): marking
        # it received makes a packet claiming it a duplicate.
        self._bitmap = 1
        self._mask = (1 << size) - 1

    def check(self, low: int) -> int | ReplayVerdict:
        """The full sequence number of a packet carrying ``low`` (the 32 transmitted bits),
        or why it must be dropped before its ICV is even checked."""
        size = self.size
        top = self.highest
        if self.esn:
            # Appendix A2.2: Tl, Th and Bl of the pseudo-code, arithmetic mod 2^32.
            top_low, top_high = top & _M32, top >> 32
            if top_low >= size - 1:
                high = top_high if low >= top_low - size + 1 else top_high + 1
            else:
                high = top_high - 1 if low >= ((top_low - size + 1) & _M32) else top_high
                if high < 0:
                    return ReplayVerdict.TOO_OLD
            if high > _M32:
                return ReplayVerdict.TOO_OLD
            sequence = (high << 32) | low
        else:
            sequence = low
        behind = top - sequence
        if behind < 0:
            return sequence
        if behind >= size:
            return ReplayVerdict.TOO_OLD
        if (self._bitmap >> behind) & 1:
            return ReplayVerdict.DUPLICATE
        return sequence

    def accept(self, sequence: int) -> None:
        """Record authenticated ``sequence`` (a value ``check`` returned), moving the right
        edge when it is the new highest."""
        ahead = sequence - self.highest
        if ahead > 0:
            self._bitmap = ((self._bitmap << ahead) | 1) & self._mask if ahead < self.size else 1
            self.highest = sequence
        else:
            self._bitmap |= 1 << -ahead

    def received(self, sequence: int) -> bool:
        """Whether ``sequence`` is inside the window and marked received (for tests, status)."""
        behind = self.highest - sequence
        return 0 <= behind < self.size and bool((self._bitmap >> behind) & 1)
