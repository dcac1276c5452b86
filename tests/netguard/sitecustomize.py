"""Network guard for the test suite: any connection or name lookup that would leave
this machine is refused and recorded.

The test session puts this folder first on PYTHONPATH, so every Python it starts
(pipeline subprocesses, Hydra launcher workers) imports this module at start-up;
``tests/conftest.py`` installs the same guard in the test process itself. A refused
attempt raises ``NetworkBlocked`` where it happens and is appended to the file named
by ``PIPELINE_NET_LOG``, which conftest reads after every test: a test that tried to
reach the network fails even if the code under test swallowed the error.

Loopback (127.0.0.0/8, ::1, localhost) and Unix sockets stay allowed: W&B's offline
service and the tests' own fake servers talk over them.
"""

from __future__ import annotations

import ipaddress
import os
import socket

LOG_ENV = "PIPELINE_NET_LOG"
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NetworkBlocked(OSError):
    """A test tried to reach the network."""


def is_local(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    name = str(host).strip("[]").lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"pid {os.getpid()}: {what}\n")
    raise NetworkBlocked(f"network access blocked in tests: {what}")


def install() -> None:
    """Wrap socket connect and name lookup (idempotent)."""
    if getattr(socket.socket.connect, "_netguard", False):
        return
    connect, connect_ex, getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def _check(sock: socket.socket, address: object) -> None:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        if inet and isinstance(address, tuple) and not is_local(address[0]):
            _refuse(f"connect to {address[0]}:{address[1]}")

    def guarded_connect(self: socket.socket, address: object) -> None:
        _check(self, address)
        return connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: object) -> int:
        _check(self, address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        if not is_local(host):
            _refuse(f"name lookup of {host}")
        return getaddrinfo(host, *args, **kwargs)

    for fn in (guarded_connect, guarded_connect_ex, guarded_getaddrinfo):
        fn._netguard = True  # type: ignore[attr-defined]
    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo  # type: ignore[assignment]


if os.environ.get(LOG_ENV):
    install()
