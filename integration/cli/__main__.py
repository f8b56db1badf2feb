import sys

from integration.cli.main import main

sys.exit(main())
