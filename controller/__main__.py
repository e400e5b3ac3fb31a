"""``python -m controller`` is the ``remediator`` command."""

import sys

from controller.cli import main

sys.exit(main())
