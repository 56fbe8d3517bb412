"""``python -m xenkeep.cli``: the same as the ``xenkeep`` console script."""

import sys

from xenkeep.cli import main

sys.exit(main())
