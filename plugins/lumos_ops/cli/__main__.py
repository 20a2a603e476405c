"""``python -m lumos_ops.cli`` runs the ``lumos`` command."""

import sys

from lumos_ops.cli import main

sys.exit(main())
