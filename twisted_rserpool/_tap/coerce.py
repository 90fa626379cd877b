"""Coercers for command-line option values, shared by every command.

Each raises ValueError with a short reason; the commands' option parser names the option.
"""

from __future__ import annotations

from typing import Any

from twisted.python import usage

__all__ = [
    "atLeastOne",
    "endpointFromString",
    "nonNegativeFloat",
    "nonNegativeInt",
    "positiveFloat",
    "share",
]


def positiveFloat(value: str) -> float:
    """A number greater than 0."""
    number = float(value)
    if not number > 0:
        raise ValueError("must be positive")
    return number


def nonNegativeFloat(value: str) -> float:
    """A number of at least 0."""
    number = float(value)
    if not number >= 0:
        raise ValueError("must not be negative")
    return number


def nonNegativeInt(value: str) -> int:
    """A whole number of at least 0."""
    number = int(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def atLeastOne(value: str) -> int:
    """A whole number of at least 1."""
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def share(value: str) -> float:
    """A share of full load, from 0 to 1."""
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("must be a share of full load, 0 to 1")
    return number


def endpointFromString(parse: Any, reactor: Any, description: str, option: str) -> Any:
    """The endpoint ``description`` names (``parse`` is ``serverFromString`` or
    ``clientFromString``); a bad string or file: UsageError naming ``option``."""
    try:
        return parse(reactor, description)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise usage.UsageError(f"{option}: {where}{e.strerror or e}") from None
    except ValueError as e:  # also PskFileError and the endpoint parsers' errors
        raise usage.UsageError(f"{option}: {e}") from None
