"""`python -m loadtest --help`: one headless command from load to verdict (docs/load-testing.md)."""

import sys

from loadtest.runner import main

sys.exit(main())
