"""``python -m twisted_rserpool._demo``: see :mod:`twisted_rserpool._demo`."""

from twisted_rserpool._demo import main

raise SystemExit(main())
