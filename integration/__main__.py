"""`python -m integration` is the `mde-enrich` command."""

import sys

from integration.cli.main import main

sys.exit(main())
