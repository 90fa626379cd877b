"""The ``rserpool`` command: pools, pool elements, ENRP peers and IKE SAs at a glance.

A console script over the admin interfaces of ``twistd enrp --admin`` (``rserpool pools``,
``pe``, ``peers``) and ``twistd vpngw --admin`` (``rserpool sas``, ``drain``,
``redirect``), in the spirit of ``swanctl --list-sas`` and RSPLIB's ``hsdump``: an aligned
table by default, the server's JSON document with ``--json``. See ``rserpool --help`` and
docs/enrp.md ("The rserpool command").
"""

from twisted_rserpool.cli.main import execute, run

__all__ = ["execute", "run"]
