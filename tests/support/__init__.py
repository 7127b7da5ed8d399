"""Test-support helpers that only the tests use (the Emulator client, the in-process bot, Prometheus and
Alertmanager processes, the network guard, a corpus of personal data). What the load test shares with the tests lives
in loadtest/rig; the modules here that name a rig module re-export it so the tests keep one import path."""

from loadtest.rig.background import BackgroundServer

__all__ = ["BackgroundServer"]
