"""systemd's notify protocol seen from the socket's side (issue 8, acceptance 4): a real daemon
sends READY=1 once started, WATCHDOG=1 from its main loop and STOPPING=1 on SIGTERM."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound unix datagram socket standing in for systemd's NOTIFY_SOCKET."""
    path = str(tmp_path / "notify.sock")
    assert len(path) < 100, "unix socket paths are limited to 107 bytes"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()


def receive_until(sock: socket.socket, wanted: str, timeout: float, seen: list[str]) -> None:
    """Read datagrams into `seen` until one (of possibly several lines) is `wanted`."""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {wanted} within {timeout:g}s; got {seen}")
        sock.settimeout(remaining)
        try:
            datagram = sock.recv(4096)
        except TimeoutError:
            continue
        seen.extend(datagram.decode().splitlines())


def test_daemon_sends_ready_watchdog_and_stopping(
    env: dict[str, str], notify_socket: tuple[socket.socket, str], tmp_path: Path
) -> None:
    sock, path = notify_socket
    seen: list[str] = []
    daemon = DaemonProcess(
        {**env, "NOTIFY_SOCKET": path}, tmp_path / "daemon.log", instance_id="test-notify"
    )
    with daemon:
        receive_until(sock, "READY=1", 10, seen)
        receive_until(sock, "WATCHDOG=1", 5, seen)
        assert "STOPPING=1" not in seen
        assert daemon.terminate() == 0
    receive_until(sock, "STOPPING=1", 5, seen)
    # READY only once the scheduler had started, and only once.
    assert seen.count("READY=1") == 1
    assert seen.index("READY=1") < seen.index("WATCHDOG=1") < seen.index("STOPPING=1")
