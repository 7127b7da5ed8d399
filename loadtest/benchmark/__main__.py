"""`python -m loadtest.benchmark --help`: the side-by-side benchmark (docs/performance.md)."""

import sys

from loadtest.benchmark.cli import main

sys.exit(main())
