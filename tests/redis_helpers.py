"""A real ``redis-server`` for the tests: started on a free loopback port, killed at the end.

Use the fixtures by importing them into a test module (pytest registers them by their
``name``)::

    from tests.redis_helpers import redis_server_fixture  # noqa: F401

    async def test_something(redis_server: RedisServer) -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)

``RedisServer.kill()`` stops the process at once (SIGKILL, like a crash) and
``RedisServer.start()`` starts it again on the same port, empty (no persistence), so tests
can take Redis away mid-run and bring it back.

Without the ``redis-server`` binary the tests are skipped with an install hint, except
when ``CI=true``: then they fail, so that CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

__all__ = ["RedisServer", "redis_server_fixture", "require_redis_server"]

INSTALL_HINT = "redis-server is not installed (apt-get install redis-server)"


def require_redis_server() -> str:
    """The path of ``redis-server``; skip the test without it (fail when ``CI=true``)."""
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{INSTALL_HINT}; CI must install it (.ci/run)")
        pytest.skip(INSTALL_HINT)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, without persistence."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (on the same port as before) and wait until it answers PING."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                self.process = None
                raise RuntimeError(f"redis-server exited at start: {err.strip()}")
            if self.ping():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.01)

    def ping(self) -> bool:
        """True if the server answers ``PING`` now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), as a crash or a lost host would."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)
            if process.stderr is not None:
                process.stderr.close()


@pytest.fixture(name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    """A fresh, empty ``redis-server`` for one test; killed afterwards."""
    server = RedisServer(require_redis_server())
    for attempt in range(3):
        try:
            server.start()
            break
        except RuntimeError:  # the free port was taken meanwhile: pick another
            if attempt == 2:
                raise
            server = RedisServer(server.binary)
    try:
        yield server
    finally:
        server.kill()
