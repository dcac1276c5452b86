"""The network guard itself: it refuses what would leave the machine, in this process
and in any Python a test starts, and lets loopback through."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import netguard_module


@pytest.fixture
def private_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Record this test's deliberate attempts apart from the suite's log."""
    log = tmp_path / "attempts.log"
    monkeypatch.setenv(netguard_module.LOG_ENV, str(log))
    return log


def test_connection_to_a_remote_address_is_refused_and_logged(private_log: Path) -> None:
    with pytest.raises(OSError, match="network access blocked"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1, never routed
    with pytest.raises(OSError, match="network access blocked"):
        socket.getaddrinfo("huggingface.co", 443)
    assert "192.0.2.1" in private_log.read_text()
    assert "huggingface.co" in private_log.read_text()


def test_loopback_is_allowed() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        client = socket.create_connection(server.getsockname(), timeout=2)
        client.close()
    finally:
        server.close()


def test_subprocesses_are_guarded_too(private_log: Path) -> None:
    code = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=1)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=60
    )
    assert done.returncode != 0
    assert "network access blocked" in done.stderr
    assert "192.0.2.1" in private_log.read_text()
