"""Deadline-bounded polling, the only way tests wait for something to happen (shared with the load test)."""

from loadtest.polling import wait_until, wait_until_async

__all__ = ["wait_until", "wait_until_async"]
