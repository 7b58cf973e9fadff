"""``python -m sie`` == the ``sie`` command."""

import sys

from sie.cli import main

sys.exit(main())
