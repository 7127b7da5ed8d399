"""Test-support stand-ins for the services the bot talks to, plus helpers to wait on them.

`BackgroundServer` lives in loadtest.standins (the load test needs it without importing tests); it is re-exported here.
"""

from loadtest.standins import BackgroundServer

__all__ = ["BackgroundServer"]
