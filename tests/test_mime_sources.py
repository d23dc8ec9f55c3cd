"""Reading content: files (anyio), async iterators, data: and http(s) URLs, big payloads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asyncmailer.errors import ContentError
from asyncmailer.message import Attachment, IcalEvent, Message
from asyncmailer.mime import THREAD_THRESHOLD, compose, compose_sync
from tests.mime_helpers import (
    parse,
)

BASE = {"from_": "shop@example.com", "to": "ada@example.com"}


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def test_path_sources(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(b"\x89PNG-data")
    (tmp_path / "body.txt").write_text("text from a file\n")
    (tmp_path / "event.ics").write_text("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    composed = await compose(
        Message(
            **BASE,  # type: ignore[arg-type]
            text=Attachment(path=str(tmp_path / "body.txt")),
            html='<img src="cid:logo">',
            ical_event=IcalEvent(path=str(tmp_path / "event.ics")),
            attachments=[Attachment(path=str(tmp_path / "logo.png"), cid="logo")],
        )
    )
    msg = parse(composed.raw)
    image = next(p for p in msg.walk() if p.get_content_type() == "image/png")
    assert image.get_payload(decode=True) == b"\x89PNG-data"
    assert image.get_filename() == "logo.png"  # from the path
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    assert text.get_content() == "text from a file\r\n"
    ics = next(p for p in msg.walk() if p.get_content_type() == "application/ics")
    assert b"VCALENDAR" in ics.get_payload(decode=True)


async def test_unreadable_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pdf")
    with pytest.raises(ContentError) as info:
        await compose(
            Message(
                **BASE, text="t", attachments=[Attachment(content=b"x"), Attachment(path=missing)]
            )
        )  # type: ignore[arg-type]
    assert info.value.field == "attachments[1]"
    assert info.value.source == missing
    with pytest.raises(ContentError) as info:
        await compose(Message(**BASE, text="t", attachments=[Attachment(path=str(tmp_path))]))  # type: ignore[arg-type]
    assert info.value.source == str(tmp_path)


async def test_disable_file_access(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"secret")
    with pytest.raises(ContentError) as info:
        await compose(Message(**BASE, html=Attachment(path=str(path)), disable_file_access=True))  # type: ignore[arg-type]
    assert info.value.field == "html"
    assert info.value.source == str(path)


async def test_async_iterator_content() -> None:
    composed = await compose(
        Message(
            **BASE,
            text=Attachment(content=_chunks(b"hel", b"lo")),
            attachments=[Attachment(content=_chunks(b"\x00\x01", b"\x02"), filename="b.bin")],
        )  # type: ignore[arg-type]
    )
    msg = parse(composed.raw)
    (att,) = msg.iter_attachments()
    assert att.get_payload(decode=True) == b"\x00\x01\x02"
    assert next(msg.iter_parts()).get_content() == "hello"


async def test_async_iterator_errors() -> None:
    async def bad() -> AsyncIterator[bytes]:
        yield b"ok"
        raise RuntimeError("disk on fire")

    async def wrong_type() -> AsyncIterator[str]:
        yield "text"

    with pytest.raises(ContentError) as info:
        await compose(Message(**BASE, text="t", attachments=[Attachment(content=bad())]))  # type: ignore[arg-type]
    assert info.value.field == "attachments[0]"
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(ContentError):
        await compose(Message(**BASE, text="t", attachments=[Attachment(content=wrong_type())]))  # type: ignore[arg-type]


def test_data_urls_always_work() -> None:
    msg = parse(
        compose_sync(
            Message(
                **BASE,  # type: ignore[arg-type]
                text="t",
                attachments=[
                    Attachment(href="data:image/png;base64,iVBORw0KGgo="),
                    Attachment(path="data:,hello%20world", filename="h.txt"),
                ],
            )
        ).raw
    )
    png, txt = msg.iter_attachments()
    assert png.get_content_type() == "image/png"
    assert png.get_payload(decode=True) == b"\x89PNG\r\n\x1a\n"
    assert png.get_filename() == "attachment-1.png"
    assert txt.get_payload(decode=True) == b"hello world"
    with pytest.raises(ContentError) as info:
        compose_sync(Message(**BASE, text="t", attachments=[Attachment(href="data:;base64,@@@")]))  # type: ignore[arg-type]
    assert info.value.field == "attachments[0]"


def test_compose_sync_refuses_io(tmp_path: Path) -> None:
    with pytest.raises(ContentError) as info:
        compose_sync(Message(**BASE, text="t", attachments=[Attachment(path=str(tmp_path / "x"))]))  # type: ignore[arg-type]
    assert info.value.field == "attachments[0]"
    with pytest.raises(ContentError):
        compose_sync(Message(**BASE, text=Attachment(content=_chunks(b"x"))))  # type: ignore[arg-type]
    with pytest.raises(ContentError):
        compose_sync(Message(**BASE, text="t", attachments=[Attachment(href="ftp://x/y")]))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ http


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=b"remote-bytes", content_type="application/pdf")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 1024)
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(body=b"late")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/files/report.pdf", ok)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    app.router.add_get("/missing", missing)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_url_access_disabled_by_default(http_server: str) -> None:
    url = f"{http_server}/files/report.pdf"
    with pytest.raises(ContentError) as info:
        await compose(Message(**BASE, text="t", attachments=[Attachment(href=url)]))  # type: ignore[arg-type]
    assert info.value.field == "attachments[0]"
    assert info.value.source == url


async def test_url_fetch(http_server: str) -> None:
    url = f"{http_server}/files/report.pdf?token=1"
    composed = await compose(
        Message(**BASE, text="t", attachments=[Attachment(href=url)], disable_url_access=False)  # type: ignore[arg-type]
    )
    (att,) = parse(composed.raw).iter_attachments()
    assert att.get_payload(decode=True) == b"remote-bytes"
    assert att.get_filename() == "report.pdf"
    assert att.get_content_type() == "application/pdf"


@pytest.mark.parametrize(("path", "fragment"), [("/big", "larger than"), ("/missing", "HTTP 404")])
async def test_url_errors(http_server: str, path: str, fragment: str) -> None:
    with pytest.raises(ContentError) as info:
        await compose(
            Message(
                **BASE,
                text="t",
                attachments=[Attachment(href=http_server + path)],
                disable_url_access=False,
            ),  # type: ignore[arg-type]
            max_url_bytes=10_000,
        )
    assert fragment in str(info.value)
    assert info.value.source == http_server + path


async def test_url_timeout(http_server: str) -> None:
    with pytest.raises(ContentError) as info:
        await compose(
            Message(
                **BASE,
                text="t",
                attachments=[Attachment(href=http_server + "/slow")],
                disable_url_access=False,
            ),  # type: ignore[arg-type]
            url_timeout=0.2,
        )
    assert "timed out" in str(info.value)


async def test_connection_refused() -> None:
    with pytest.raises(ContentError) as info:
        await compose(
            Message(
                **BASE,
                text="t",
                attachments=[Attachment(href="http://127.0.0.1:9/x")],
                disable_url_access=False,
            )  # type: ignore[arg-type]
        )
    assert info.value.field == "attachments[0]"


# ------------------------------------------------------------------------ big payloads


async def test_large_message_is_built_off_the_event_loop() -> None:
    """While a 20 MB attachment is encoded, the event loop keeps running other tasks."""
    blob = os.urandom(20 * 1024 * 1024)
    assert len(blob) > THREAD_THRESHOLD
    ticks = 0
    done = False
    loop = asyncio.get_running_loop()
    worst = 0.0

    async def ticker() -> None:
        nonlocal ticks, worst
        last = loop.time()
        while not done:
            await asyncio.sleep(0.001)
            now = loop.time()
            worst = max(worst, now - last)
            last = now
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    composed = await compose(
        Message(**BASE, text="t", attachments=[Attachment(content=blob, filename="big.bin")])
    )  # type: ignore[arg-type]
    done = True
    await task
    assert ticks >= 3, "the loop did not run while composing"
    assert len(composed.raw) > len(blob) * 4 // 3
    print(f"20 MB compose: worst loop lag {worst * 1000:.1f} ms over {ticks} ticks")
