"""Deadline-bounded polling, the only way tests wait for something to happen: loadtest/rig/polling.py."""

from loadtest.rig.polling import wait_until, wait_until_async

__all__ = ["wait_until", "wait_until_async"]
