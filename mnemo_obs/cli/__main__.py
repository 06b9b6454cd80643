"""``python -m mnemo_obs.cli``: the same as the ``mnemo-obs`` command."""

import sys

from . import main

sys.exit(main())
