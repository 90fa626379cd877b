"""The ``twistd`` commands of twisted-rserpool, and how they report problems.

:class:`CommandServiceMaker` is the plugin object of each command: an option or
configuration problem (a bad number, a missing or unsafe file) ends the command with one
``twistd <command>: --option: reason`` line on stderr and exit status 1, never a traceback,
and ``--version`` prints this package's version.

Each command writes its log through :mod:`twisted_rserpool._logfile` (twistd's lines and
files, written in batches) and takes ``--log-level``: the service it makes gives
``twistd``'s application that observer when it joins it (the ``ILogObserver``
component, which ``twistd`` prefers to its own file observer and ``--logger`` overrides).
"""

from __future__ import annotations

import functools
import sys
import textwrap
from collections.abc import Callable
from typing import Any, ClassVar

from twisted.application.service import IService, MultiService, ServiceMaker
from twisted.logger import ILogObserver, LogLevel
from twisted.python import log as legacy_log
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.reflect import namedAny

from twisted_rserpool._logfile import levelNamed


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
        optParameters: ClassVar[list[list[Any]]] = [
            [
                "log-level",
                None,
                "debug",
                "Write log lines of this level and above: debug, info, warn, error or "
                "critical (to the --logfile, standard output or --syslog; a --logger "
                "observer gets every line).",
                _logLevel,
            ],
        ]

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


def _logLevel(name: str) -> LogLevel:
    return levelNamed(name)


class _CommandService(MultiService):
    """A command's service, which gives ``twistd``'s application its log observer.

    ``twistd`` makes the command's service, then the application, sets the application
    as the service's parent and only then looks for the application's ``ILogObserver``.
    """

    def __init__(self, service: IService, twistdOptions: Any, minimum: LogLevel) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._twistdOptions = twistdOptions
        self._minimum = minimum
        service.setServiceParent(self)  # type: ignore[no-untyped-call]

    def setServiceParent(self, parent: Any) -> None:
        if isinstance(parent, Componentized) and not (
            parent.getComponent(ILogObserver, None)  # type: ignore[no-untyped-call]
            or parent.getComponent(legacy_log.ILogObserver, None)  # type: ignore[no-untyped-call]
        ):
            from twisted.internet import reactor  # noqa: PLC0415 (twistd's, installed by now)

            from twisted_rserpool._logfile import twistdObserver  # noqa: PLC0415

            minimum = None if self._minimum == LogLevel.debug else self._minimum
            observer = twistdObserver(self._twistdOptions, reactor, minimum)
            if observer is not None:
                parent.setComponent(ILogObserver, observer)  # type: ignore[no-untyped-call]
        super().setServiceParent(parent)  # type: ignore[no-untyped-call]


def withLogObserver(service: IService, options: usage.Options) -> IService:
    """``service`` as ``twistd`` runs it: with the log observer ``options`` ask for.

    ``options`` are the command's (parsed by ``twistd``, their ``parent`` twistd's own);
    without a parent (not run by ``twistd``) the service is left as it is.
    """
    twistdOptions = getattr(options, "parent", None)
    if twistdOptions is None:
        return service
    minimum = options.get("log-level", LogLevel.debug)
    if isinstance(minimum, str):  # the default, as written in --help
        minimum = levelNamed(minimum)
    return _CommandService(service, twistdOptions, minimum)


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
                service = make(options)
            except usage.UsageError as e:
                raise SystemExit(f"twistd {tapname}: {e}") from None
            return withLogObserver(service, options)

        return makeService


__all__ = ["CommandServiceMaker", "commandOptions", "withLogObserver"]
