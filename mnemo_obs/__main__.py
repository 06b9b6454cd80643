"""``python -m mnemo_obs``: the same as the ``mnemo-obs`` command."""

import sys

from .cli import main

sys.exit(main())
