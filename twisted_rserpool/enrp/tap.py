"""``twistd enrp`` as a library, for ``.tac`` files and programs that build the same server.

``Options`` parses the ``twistd enrp`` command line; ``makeService(options, reactor=None,
*, registrarClass=None)`` builds the service tree ``twistd enrp`` runs, with a registrar
class of your own (``examples/custom_registrar.tac``, ``docs/developer.md``).
"""

from twisted_rserpool._tap.enrp import Options, makeService

__all__ = ["Options", "makeService"]
