"""``twistd vpngw`` as a library, for ``.tac`` files and programs that build the same gateway.

``Options`` parses the ``twistd vpngw`` command line; ``makeService(options, reactor=None,
*, redirectPolicyClass=None)`` builds the service tree ``twistd vpngw`` runs, with a
``RedirectPolicy`` subclass of your own (``docs/developer.md``).
"""

from twisted_rserpool._tap.vpngw import Options, makeService

__all__ = ["Options", "makeService"]
