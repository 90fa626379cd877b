"""The registrar class of ``twistd enrp``: ``--registrar``, a ``.tac`` file's own, or the
default, and whether it suits a server that peers."""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python import usage

from twisted_rserpool._tap.classes import namedSubclass
from twisted_rserpool.enrp.registrar import Registrar
from twisted_rserpool.enrp.takeover import TakeoverRegistrar

__all__ = ["checkRegistrarClass", "namedRegistrar", "registrarClassFor", "registrarProblem"]

log = Logger(namespace="twisted_rserpool._tap.enrp")  # the command's namespace


def registrarProblem(registrarClass: type[Registrar], peering: bool) -> str | None:
    """Why ``registrarClass`` cannot be the registrar of a server that (not) peers, or None."""
    if issubclass(registrarClass, TakeoverRegistrar) or not peering:
        return None
    return (
        "not a subclass of twisted_rserpool.enrp.TakeoverRegistrar, which a server with "
        "--peer or --enrp needs (it admits the pool elements it takes over)"
    )


def namedRegistrar(name: str, peering: bool) -> type[Registrar]:
    """The class ``--registrar`` names; a ``UsageError`` if it is none or cannot serve."""
    chosen = namedSubclass("--registrar", name, Registrar)
    problem = registrarProblem(chosen, peering)
    if problem is not None:
        raise usage.UsageError(f"--registrar: {name}: {problem}")
    return chosen


def checkRegistrarClass(registrarClass: type[Registrar], peering: bool) -> None:
    """A ``TypeError`` if the ``registrarClass`` a program gives cannot serve."""
    problem = registrarProblem(registrarClass, peering)
    if problem is not None:
        raise TypeError(f"registrarClass {registrarClass.__qualname__}: {problem}")


def registrarClassFor(
    registrarClass: type[Registrar] | None, chosen: type[Registrar] | None, peering: bool
) -> type[Registrar]:
    """The registrar class to build: ``registrarClass``, else ``chosen`` (``--registrar``),
    else ``Registrar`` (``TakeoverRegistrar`` when peering); a class of its own is logged."""
    if registrarClass is None:
        registrarClass = chosen or (TakeoverRegistrar if peering else Registrar)
    if registrarClass not in (Registrar, TakeoverRegistrar):
        log.info(
            "Registrar class {registrar}",
            registrar=f"{registrarClass.__module__}.{registrarClass.__qualname__}",
        )
    return registrarClass
