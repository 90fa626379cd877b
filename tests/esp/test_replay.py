"""The anti-replay window (RFC 4303 3.4.3) and ESN inference (appendix A2), at its edges and
against a set-based model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_rserpool.esp import ReplayVerdict, ReplayWindow

M32 = 1 << 32


def receive(window: ReplayWindow, low: int) -> int | ReplayVerdict:
    """Check and, when it passes, accept (as after a verified ICV)."""
    result = window.check(low)
    if isinstance(result, int):
        window.accept(result)
    return result


@pytest.mark.parametrize("size", [64, 1024])
def test_edges(size: int) -> None:
    """The right edge moves with each new highest; the left edge T - W + 1 is still inside,
    T - W is too old; a number inside the window is accepted once, then is a replay."""
    window = ReplayWindow(size)
    assert receive(window, 1) == 1
    assert receive(window, 1) is ReplayVerdict.DUPLICATE
    top = size + 100
    assert receive(window, top) == top
    assert window.highest == top
    assert window.check(top - size) is ReplayVerdict.TOO_OLD
    assert receive(window, top - size + 1) == top - size + 1  # the left edge
    assert receive(window, top - size + 1) is ReplayVerdict.DUPLICATE
    assert receive(window, top - 1) == top - 1
    assert window.check(top) is ReplayVerdict.DUPLICATE
    assert receive(window, top + 1) == top + 1  # the window slides by one
    assert window.check(top - size + 1) is ReplayVerdict.TOO_OLD
    assert window.received(top - 1) and not window.received(top - 2)


@pytest.mark.parametrize("size", [64, 1024])
def test_large_jump_clears_the_window(size: int) -> None:
    """A jump of the window's size or more forgets every earlier mark: only the new highest is
    received, and everything W or more below it is too old."""
    window = ReplayWindow(size)
    for n in range(1, size + 1):
        receive(window, n)
    jump = 5 * size
    assert receive(window, jump) == jump
    assert window.check(jump - size) is ReplayVerdict.TOO_OLD
    assert all(window.check(n) == n for n in range(jump - size + 1, jump))
    # A jump of less than the window keeps the marks that stay inside it.
    assert receive(window, jump + size - 1) == jump + size - 1
    assert window.check(jump) is ReplayVerdict.DUPLICATE


def test_sequence_zero_is_never_accepted() -> None:
    """No sender uses 0 (RFC 4303 3.3.3: the first packet is 1)."""
    window = ReplayWindow(64)
    assert window.check(0) is ReplayVerdict.DUPLICATE
    receive(window, 1000)
    assert window.check(0) is ReplayVerdict.TOO_OLD
    esn = ReplayWindow(64, esn=True)
    assert esn.check(0) is ReplayVerdict.DUPLICATE


def test_window_size_bounds() -> None:
    """At least 64 (the issue's floor), at most 2^31 (appendix A2's assumption)."""
    with pytest.raises(ValueError, match="at least 64"):
        ReplayWindow(32)
    with pytest.raises(ValueError):
        ReplayWindow((1 << 31) + 1)


def test_32_bit_sequence_numbers_do_not_wrap() -> None:
    """Without ESN, a small number after 2^32 - 1 is too old, never a new subspace."""
    window = ReplayWindow(64)
    receive(window, M32 - 1)
    assert window.check(3) is ReplayVerdict.TOO_OLD


@pytest.mark.parametrize("size", [64, 1024])
def test_esn_case_a_crosses_upwards(size: int) -> None:
    """Case A (Tl >= W - 1): a low number below Bl is in the next subspace, Th + 1."""
    window = ReplayWindow(size, esn=True)
    window.accept(M32 - 2)  # T = 2^32 - 2
    assert window.check(5) == M32 + 5
    assert window.check(M32 - 1) == M32 - 1  # ahead, same subspace
    assert window.check(M32 - 2) is ReplayVerdict.DUPLICATE
    assert receive(window, 5) == M32 + 5
    assert window.highest == M32 + 5
    # Now in case B: numbers just below 2^32 belong to the previous subspace, Th - 1.
    assert window.check(M32 - 1) == M32 - 1
    assert window.check(M32 - 2) is ReplayVerdict.DUPLICATE
    # Below Bl = Tl - W + 1 (mod 2^32) the RFC reads the current subspace: far ahead (the
    # ICV then decides), never a wrap back.
    left = (M32 - size + 6) & 0xFFFFFFFF
    assert window.check(left) == left  # the left edge, subspace 0
    assert window.check(left - 1) == M32 + left - 1


@pytest.mark.parametrize("size", [64, 1024])
def test_esn_case_b_looks_backwards(size: int) -> None:
    """Case B (Tl < W - 1): Seql >= Bl means Th - 1, below it Th; a far-ahead number in the
    current subspace stays in it."""
    window = ReplayWindow(size, esn=True)
    window.accept(3 * M32 + 2)
    assert window.check(M32 - 1) == 3 * M32 - 1
    assert window.check(M32 - size + 3) == 3 * M32 - size + 3  # the left edge
    assert window.check(M32 - size + 2) == 4 * M32 - size + 2  # below Bl: next subspace
    assert window.check(1_000_000) == 3 * M32 + 1_000_000
    assert window.check(2) is ReplayVerdict.DUPLICATE


def test_esn_before_the_first_subspace_is_too_old() -> None:
    """At the start (T = 0, case B), what would be subspace -1 is refused."""
    window = ReplayWindow(64, esn=True)
    assert window.check(M32 - 1) is ReplayVerdict.TOO_OLD
    assert window.check(M32 - 63) is ReplayVerdict.TOO_OLD
    assert window.check(M32 - 64) == M32 - 64  # below Bl: subspace 0, far ahead


@given(
    size=st.sampled_from([64, 128, 1024]),
    arrivals=st.lists(st.integers(min_value=0, max_value=3000), max_size=200),
)
def test_matches_a_set_model(size: int, arrivals: list[int]) -> None:
    """Any arrival order: a number is accepted iff it is positive, never seen, and greater
    than the highest accepted minus the window size."""
    window = ReplayWindow(size)
    seen: set[int] = set()
    highest = 0
    for n in arrivals:
        expected = n > 0 and n not in seen and n > highest - size
        result = receive(window, n)
        assert isinstance(result, int) == expected, (n, highest)
        if expected:
            seen.add(n)
            highest = max(highest, n)


@given(
    start=st.integers(min_value=0, max_value=(1 << 40)),
    steps=st.lists(st.integers(min_value=-63, max_value=1 << 20), min_size=1, max_size=50),
)
def test_esn_inference_recovers_the_full_number(start: int, steps: list[int]) -> None:
    """Whenever the true 64-bit number is within the window below T or less than 2^32 - W
    above it, the inferred number from its low 32 bits is the true one."""
    window = ReplayWindow(64, esn=True)
    if start:
        window.accept(start)
    for step in steps:
        true = window.highest + step
        if true <= 0 or true <= window.highest - 64:
            continue
        result = window.check(true & 0xFFFFFFFF)
        if window.received(true):
            assert result is ReplayVerdict.DUPLICATE
            continue
        assert result == true
        window.accept(true)
