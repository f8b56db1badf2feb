import sys

from integration.cli.command import main

sys.exit(main())
