"""Records every attempt to reach (or resolve) anything other than the local machine.

An audit hook sees connects, datagram sends and name lookups whatever library makes them. Hooks cannot
be removed, so `install()` adds one hook per process; `reset()` and `capture()` manage what it records.
"""

import contextlib
import ipaddress
import socket
import sys
import sysconfig
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

# Audit events whose arguments name a remote address or a host to resolve.
_SOCKET_ADDRESS_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
_NAME_EVENTS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"})
_WATCHED = _SOCKET_ADDRESS_EVENTS | _NAME_EVENTS | {"socket.getnameinfo", "http.client.connect", "urllib.Request"}
_INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_LOCAL_NAMES = frozenset({"", "localhost", "localhost.", "localhost.localdomain"})
_PATHS = sysconfig.get_paths()
_STDLIB = _PATHS["stdlib"]
_SITE_PACKAGES = (_PATHS["purelib"], _PATHS["platlib"])

_installed = False
_install_lock = threading.Lock()
_record_lock = threading.Lock()
_offenders: list[str] = []
_diverted = threading.local()


def install() -> None:
    """Start recording (idempotent)."""
    global _installed
    with _install_lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


def offenders() -> list[str]:
    """Descriptions like "socket.connect 192.0.2.1:80 (thread MainThread, at pkg/mod.py:12)", oldest first."""
    with _record_lock:
        return list(_offenders)


def reset() -> None:
    take()


def take() -> list[str]:
    """Return and forget everything recorded so far, atomically."""
    with _record_lock:
        taken = list(_offenders)
        _offenders.clear()
        return taken


@contextlib.contextmanager
def no_outside_connections() -> Iterator[None]:
    """Fail with AssertionError if anything (in any thread) reaches beyond this machine inside the block.

    Attempts recorded before entering are reported too, so nothing slips through between checks.
    If the block itself raises, that exception wins and the attempts stay recorded for the next check.
    """
    install()
    earlier = take()
    try:
        yield
    except BaseException:
        with _record_lock:
            _offenders[:0] = earlier
        raise
    found = earlier + take()
    if found:
        raise AssertionError("attempted to reach beyond the local machine:\n  " + "\n  ".join(found))


@contextlib.contextmanager
def capture() -> Iterator[list[str]]:
    """Divert what this thread attempts into the yielded list instead of the global record."""
    install()
    previous = getattr(_diverted, "sink", None)
    sink: list[str] = []
    _diverted.sink = sink
    try:
        yield sink
    finally:
        _diverted.sink = previous


def is_local(host: object) -> bool:
    """True for loopback, unspecified (never leaves the machine) and the localhost names."""
    if host is None:
        return True
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii", errors="replace")
    if not isinstance(host, str):
        return False
    name = host.strip("[]").split("%", 1)[0].lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def _target(event: str, args: tuple[Any, ...]) -> tuple[object, object] | None:
    """(host, port) an event is about, or None when it cannot leave the machine (e.g. a Unix socket)."""
    if event in _SOCKET_ADDRESS_EVENTS:
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) not in _INET_FAMILIES or not isinstance(address, tuple):
            return None
        return address[0], address[1]
    if event in _NAME_EVENTS:
        return args[0], (args[1] if event == "socket.getaddrinfo" else None)
    if event == "socket.getnameinfo":
        sockaddr = args[0]
        return (sockaddr[0], sockaddr[1]) if isinstance(sockaddr, tuple) else None
    if event == "http.client.connect":
        return args[1], args[2]
    url = args[0] if isinstance(args[0], str) else ""
    parts = urlsplit(url)
    return (parts.hostname, parts.port) if parts.scheme in ("http", "https", "ftp") else None


def _is_plumbing(filename: str) -> bool:
    in_stdlib = filename.startswith(_STDLIB) and not filename.startswith(_SITE_PACKAGES)
    return in_stdlib or filename == __file__


def _origin() -> str:
    """Where the attempt came from: the innermost caller outside the standard library."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and _is_plumbing(frame.f_code.co_filename):
        frame = frame.f_back
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"
    return f"thread {threading.current_thread().name}, at {where}"


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _WATCHED:
        return
    try:
        target = _target(event, args)
        if target is None or is_local(target[0]):
            return
        host, port = target
        description = f"{event} {host!s}:{port!s} ({_origin()})"
        sink = getattr(_diverted, "sink", None)
        if sink is not None:
            sink.append(description)
            return
        with _record_lock:
            _offenders.append(description)
    except Exception:  # raising from an audit hook would abort the caller's network operation
        return
