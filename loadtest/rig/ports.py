"""Free TCP ports on 127.0.0.1, for servers started by the tests and the load test."""

from __future__ import annotations

import contextlib
import socket


def free_ports(count: int) -> list[int]:
    """Ports the OS just handed out on 127.0.0.1, released again; all bound at once, so they differ.

    Nothing listens on them when this returns: a port can be taken by someone else before its user binds it, so a
    caller that cannot retry should bind port 0 itself. A port nothing listens on is also what a test of a dead
    target needs."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    """One port of `free_ports`."""
    (port,) = free_ports(1)
    return port
