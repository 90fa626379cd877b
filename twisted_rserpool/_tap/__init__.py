"""The ``twistd`` commands of twisted-rserpool, and how they report problems.

:class:`CommandServiceMaker` is the plugin object of each command: an option or
configuration problem (a bad number, a missing or unsafe file) ends the command with one
``twistd <command>: --option: reason`` line on stderr and exit status 1, never a traceback,
and ``--version`` prints this package's version.
"""

from __future__ import annotations

import functools
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, ServiceMaker
from twisted.python import usage
from twisted.python.reflect import namedAny


class _NamedCoerceParameter(usage.CoerceParameter):
    """A typed option whose bad value is reported with the option's name."""

    def dispatch(self, parameterName: str, value: str | None) -> None:
        try:
            super().dispatch(parameterName, value)  # type: ignore[no-untyped-call]
        except usage.UsageError as e:
            # Twisted says only "Parameter type enforcement failed: ...".
            reason = str(e).removeprefix("Parameter type enforcement failed: ")
            raise usage.UsageError(f"--{parameterName}: {reason}") from None


class _UnbrokenWrap:
    """textwrap for option help that never breaks a word: endpoint strings stay whole."""

    @staticmethod
    def wrap(text: str, width: int = 70) -> list[str]:
        return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


def _version() -> str:
    import twisted  # noqa: PLC0415
    from twisted_rserpool import __version__  # noqa: PLC0415

    return f"twisted-rserpool {__version__} (Twisted {twisted.__version__})"


@functools.cache
def commandOptions(tapname: str, base: type[usage.Options]) -> type[usage.Options]:
    """``base`` as ``twistd tapname`` parses it: one line per problem, our own --version."""

    class CommandOptions(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            dispatch: dict[str, Any] = self._dispatch
            for name, handler in list(dispatch.items()):
                if type(handler) is usage.CoerceParameter:
                    dispatch[name] = _NamedCoerceParameter(handler.options, handler.coerce)  # type: ignore[no-untyped-call]

        def parseOptions(self, options: list[str] | None = None) -> None:
            try:
                super().parseOptions(options)
            except usage.UsageError as e:
                raise SystemExit(
                    f"twistd {tapname}: {e} (twistd {tapname} --help lists the options)"
                ) from None

        def getUsage(self, width: int | None = None) -> str:
            # Twisted wraps help with textwrap's defaults, which split endpoint strings and
            # paths at colons and hyphens, keeps the docstrings' indentation inside lines and
            # prints "[default: ]" for an empty default.
            state = self.__dict__  # Twisted leaves docs and defaults untyped
            docs: dict[str, str] = state["docs"]
            defaults: dict[str, object] = state["defaults"]
            state["docs"] = {name: " ".join(doc.split()) for name, doc in docs.items()}
            state["defaults"] = {name: value for name, value in defaults.items() if value != ""}
            wrap = vars(usage)["textwrap"]
            setattr(usage, "textwrap", _UnbrokenWrap)  # noqa: B010 (not an exported name)
            try:
                return str(super().getUsage(width))
            finally:
                setattr(usage, "textwrap", wrap)  # noqa: B010
                state["docs"], state["defaults"] = docs, defaults

        def opt_version(self) -> None:
            """Display the version of twisted-rserpool (and of Twisted) and exit."""
            sys.stdout.write(_version() + "\n")  # the command's own output, not a log line
            sys.exit(0)

    CommandOptions.__name__ = CommandOptions.__qualname__ = base.__name__
    CommandOptions.__doc__ = base.__doc__
    return CommandOptions


class CommandServiceMaker(ServiceMaker):
    """The ``IServiceMaker`` of a twisted-rserpool ``twistd`` command."""

    @property
    def options(self) -> type[usage.Options]:
        """The command's options, reporting problems as one line."""
        return commandOptions(self.tapname, namedAny(self.module).Options)  # type: ignore[no-untyped-call]

    @property
    def makeService(self) -> Callable[[usage.Options], IService]:
        """The command's ``makeService``; a configuration problem ends it with one line."""
        make: Callable[[usage.Options], IService] = namedAny(self.module).makeService  # type: ignore[no-untyped-call]
        tapname: str = self.tapname

        def makeService(options: usage.Options) -> IService:
            try:
                return make(options)
            except usage.UsageError as e:
                raise SystemExit(f"twistd {tapname}: {e}") from None

        return makeService


__all__ = ["CommandServiceMaker", "commandOptions"]
