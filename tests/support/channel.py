"""The channel connector stand-in: loadtest/rig/channel.py, re-exported for the tests."""

from loadtest.rig.channel import RESET, Answer, ChannelRequest, ChannelStandIn

__all__ = ["RESET", "Answer", "ChannelRequest", "ChannelStandIn"]
