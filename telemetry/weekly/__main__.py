import sys

from telemetry.weekly.cli import main

sys.exit(main())
