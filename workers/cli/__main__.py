"""``python -m workers.cli``: the same as the ``sagaworks`` command."""

import sys

from workers.cli import main

sys.exit(main())
