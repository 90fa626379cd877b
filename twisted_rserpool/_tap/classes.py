"""Classes named on a ``twistd`` command line (``--registrar``, ``--redirect-policy``)."""

from __future__ import annotations

from typing import TypeVar

from twisted.python import usage
from twisted.python.reflect import namedAny

T = TypeVar("T")


def namedSubclass(option: str, name: str, base: type[T]) -> type[T]:
    """The class that ``name`` (``package.module.Class``) names, which must subclass ``base``.

    Any problem (no such module or attribute, an import that fails, not a class, not a
    subclass of ``base``) is a ``UsageError`` that names ``option``, so that ``twistd``
    reports it as one line.
    """
    if "." not in name.strip("."):
        raise usage.UsageError(
            f"{option}: {name!r} is not a dotted name (give package.module.Class)"
        )
    try:
        found = namedAny(name)  # type: ignore[no-untyped-call]
    except ValueError as e:  # InvalidName, ModuleNotFound, ObjectNotFound
        reason = str(e) if name in str(e) else f"{name}: {e}"
        raise usage.UsageError(
            f"{option}: {reason} (is its module installed, or on PYTHONPATH?)"
        ) from None
    except AttributeError as e:  # the module imported, the attribute is missing
        raise usage.UsageError(f"{option}: {name}: {e}") from None
    except Exception as e:  # the module itself failed to import: say how, in one line
        raise usage.UsageError(
            f"{option}: {name}: importing it failed: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(found, type):
        raise usage.UsageError(f"{option}: {name} is a {type(found).__name__}, not a class")
    if not issubclass(found, base):
        raise usage.UsageError(
            f"{option}: {name} is not a subclass of {base.__module__}.{base.__qualname__}"
        )
    return found


__all__ = ["namedSubclass"]
