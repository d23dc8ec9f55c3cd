"""The local SES endpoint's HTTP handling: framing, malformed requests, bounded work.

The endpoint runs in its own process (``python -m asyncmailer.testing``) and is spoken to
over blocking sockets with deadlines, so a request that hangs the server, or blocks its
event loop, fails a test within seconds instead of hanging the suite.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

#: Seconds a well-behaved server may take to answer (or hang up on) one small request.
DEADLINE = 5.0


class Server:
    """An endpoint process and the means to talk to it over raw sockets."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.address = (host, int(port))

    def connect(self) -> socket.socket:
        return socket.create_connection(self.address, timeout=DEADLINE)

    def exchange(
        self, data: bytes, *, half_close: bool = False, deadline: float = DEADLINE
    ) -> tuple[bytes, bool]:
        """Send ``data``, then read until the server closes: (bytes read, closed in time)."""
        with self.connect() as sock:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            return read_until_close(sock, deadline)

    def alive(self) -> bool:
        """Whether a fresh connection gets an answer in time (the event loop is free)."""
        answer, _ = self.exchange(
            b"GET /_asyncmailer/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        return answer.startswith(b"HTTP/1.1 200")


def read_until_close(sock: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """What the peer sends before it closes, or before ``deadline`` seconds pass."""
    chunks: list[bytes] = []
    end = time.monotonic() + deadline
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return b"".join(chunks), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncmailer.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield Server(process, process.stdout.readline().strip())
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # a server stuck in a loop ignores SIGTERM
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def status_of(answer: bytes) -> int:
    """The status code of the first response in ``answer``."""
    # aiohttp answers in the request's own version (a bogus "HTTP/2.0" included).
    assert answer.startswith(b"HTTP/") and answer[8:9] == b" ", answer[:200]
    return int(answer[9:12])


# ----------------------------------------------------------- regressions (hand parser)


def test_a_negative_chunk_size_is_refused(server: Server) -> None:
    # The hand-written parser read "-6" as a size and walked backwards for ever.
    request = (
        b"POST /v2/email/outbound-emails HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n-6\r\nabcdef\r\n0\r\n\r\n"
    )
    answer, closed = server.exchange(request)
    assert closed
    assert status_of(answer) == 400
    assert server.alive()


def test_one_60_byte_request_cannot_block_the_event_loop(server: Server) -> None:
    # Sent on one connection that stays open, it must not stop another from being served.
    request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-6\r\n"
    assert len(request) == 60
    with server.connect() as sock:
        sock.sendall(request)
        start = time.monotonic()
        assert server.alive()
        assert time.monotonic() - start < DEADLINE
        answer, _ = read_until_close(sock, DEADLINE)
    assert status_of(answer) == 400


def test_a_content_length_of_non_ascii_digits_is_refused(server: Server) -> None:
    # "²" (latin-1 0xB2) passed str.isdigit(), then int() raised in data_received.
    for value in (b"\xb2", "\u0662".encode(), b"1_0", b"+5", b"0x10", b" 5 5"):
        request = (
            b"POST /v2/email/outbound-emails HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: " + value + b"\r\n\r\n{}"
        )
        answer, closed = server.exchange(request)
        assert closed, value
        assert status_of(answer) == 400, value
    assert server.alive()


def test_a_body_of_one_byte_chunks_is_read_in_linear_time(server: Server) -> None:
    # The hand parser decoded the body again from the start on every read: 4 MB of 1-byte
    # chunks on the wire took ~6 s, 16 times as long as 1 MB. Read once, 4 MB takes about
    # 4 times as long as 1 MB (~1 s with a recent aiohttp; 3.9's parser is ~7x slower).
    def post(megabytes: int) -> float:
        chunks = b"1\r\na\r\n" * (megabytes * 2**20 // 6)
        request = (
            b"POST /v2/email/outbound-emails HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: close\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        )
        start = time.monotonic()
        answer, closed = server.exchange(request, deadline=15.0)
        elapsed = time.monotonic() - start
        assert closed, elapsed
        assert status_of(answer) == 400  # read in full, then refused as SES would: not JSON
        assert b"BadRequestException" in answer
        return elapsed

    small, large = post(1), post(4)
    assert large < 4 * small * 2.5 + 0.5, (small, large)


# ------------------------------------------------------------------ malformed requests


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NONSENSE\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdefgh\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: close\r\n" + b"X: y\r\n" * 1000 + b"\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n bad: folding\r\nConnection: close\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
    ],
)
def test_malformed_requests_get_a_4xx_and_the_connection_closes(
    server: Server, request_bytes: bytes
) -> None:
    answer, closed = server.exchange(request_bytes)
    assert closed
    assert 400 <= status_of(answer) < 500
    # Had the client stopped sending, the server would close without an answer.
    assert server.exchange(request_bytes, half_close=True)[1]
    assert server.alive()


def test_a_declared_body_over_the_limit_is_refused_at_once(server: Server) -> None:
    answer, closed = server.exchange(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n"
    )
    assert closed
    assert status_of(answer) == 413


def test_a_truncated_body_is_not_waited_for_once_the_client_stops_sending(
    server: Server,
) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    for body in (b"fffffffff\r\n" + b"a" * 65536, b"5\r\nab"):
        answer, closed = server.exchange(head + body, half_close=True)
        assert closed
        assert not answer or 400 <= status_of(answer) < 500
    answer, closed = server.exchange(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", half_close=True
    )
    assert closed
    assert server.alive()


# ------------------------------------------------------------------------- properties

_METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"", b"G\x00T", b"POST "])
_TARGETS = st.sampled_from(
    [b"/", b"/v2/email/outbound-emails", b"/_asyncmailer/config", b"*", b"", b"/\xff", b"//"]
)
_VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.", b"http/1.1", b""])
_FRAMING = st.sampled_from(
    [
        b"Content-Length",
        b"Transfer-Encoding",
        b"Host",
        b"Expect",
        b"Connection",
        b"Content-Type",
        b"Origin",
        b"X-Amz-Date",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(
        [
            b"chunked",
            b"gzip, chunked",
            b"-6",
            b"\xb2",
            b"0",
            b"10",
            b"99999999999999999999",
            b"100-continue",
            b"close",
            b"keep-alive",
            b"application/json",
            b"http://evil.example",
            b"127.0.0.1",
            b"identity",
        ]
    ),
    st.binary(max_size=20),
)
_HEADERS = st.lists(st.tuples(_FRAMING | st.binary(max_size=12), _VALUES), max_size=6)
_LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r", b""])
_BODIES = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.tuples(
            st.sampled_from([b"-6", b"0", b"1", b"ff", b"zz", b"1;x=y", b""]), st.binary(max_size=8)
        ),
        max_size=6,
    ).map(lambda chunks: b"".join(size + b"\r\n" + data + b"\r\n" for size, data in chunks)),
)


@st.composite
def http_requests(draw: st.DrawFn) -> bytes:
    """Mostly HTTP-shaped requests, wrong in the head, the framing or the body."""
    end = draw(_LINE_ENDS)
    line = draw(_METHODS) + b" " + draw(_TARGETS) + b" " + draw(_VERSIONS)
    fields = b"".join(name + b": " + value + end for name, value in draw(_HEADERS))
    return line + end + fields + end + draw(_BODIES)


@settings(max_examples=60)
@given(request_bytes=http_requests())
def test_malformed_heads_and_bodies_never_hang_or_crash_the_server(
    server: Server, request_bytes: bytes
) -> None:
    # The client stops sending (half-close): whatever it sent, the server must answer
    # (a 4xx for anything malformed, never a 5xx) or close, in bounded time.
    answer, closed = server.exchange(request_bytes, half_close=True)
    assert closed, request_bytes
    if answer:
        assert status_of(answer) < 500, (request_bytes, answer[:300])
    assert server.process.poll() is None


@settings(max_examples=40)
@given(data=st.binary(min_size=1, max_size=400))
def test_arbitrary_bytes_never_hang_or_crash_the_server(server: Server, data: bytes) -> None:
    answer, closed = server.exchange(data, half_close=True)
    assert closed, data
    if answer:
        assert 400 <= status_of(answer) < 500 or answer.startswith(b"HTTP/1.1 2"), answer[:300]
    assert server.process.poll() is None


def test_the_server_is_still_serving_after_the_properties(server: Server) -> None:
    assert server.alive()
    answer, _ = server.exchange(
        b"GET /_asyncmailer/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    stats = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert stats["in_flight"] == 0
