"""``python -m twisted_rserpool.cli``: the ``rserpool`` command."""

from twisted_rserpool.cli.main import run

run()
