"""`python -m integration` is the `mde-enrich` command."""

import sys

from integration.cli.command import main

sys.exit(main())
