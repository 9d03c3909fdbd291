"""``python -m cds_service.cli``: the same as ``jak-cds``."""

import sys

from cds_service.cli.commands import main

sys.exit(main())
