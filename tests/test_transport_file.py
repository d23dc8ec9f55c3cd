"""FileTransport: one .eml per message, atomic, named from the Message-ID, off the loop."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from asyncmailer.errors import (
    AccessDeniedError,
    ConfigurationError,
    Outcome,
    ServiceUnavailableError,
)
from asyncmailer.message import Message
from asyncmailer.result import ComposedMessage
from asyncmailer.retry import RetryPolicy
from asyncmailer.transports.file import MAX_STEM, FileTransport, message_file_name


def order(n: int, **fields: object) -> Message:
    base: dict[str, object] = {
        "from_": "shop@example.com",
        "to": "ada@example.org",
        "bcc": "audit@example.org",
        "subject": f"Order {n}",
        "text": f"Order {n} is on its way",
        "message_id": f"<order-{n}@shop.example>",
    }
    base.update(fields)
    return Message(**base)  # type: ignore[arg-type]


async def test_writes_one_eml_named_after_the_message_id(tmp_path: Path) -> None:
    directory = tmp_path / "out" / "nested"
    async with FileTransport(directory=directory) as files:
        result = await files.send_mail(order(42))
    path = Path(result.response)
    assert path == directory / "order-42@shop.example.eml"
    data = path.read_bytes()
    assert b"\r\nSubject: Order 42\r\n" in data
    assert b"\r\n\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert result.transport == "file"
    assert result.message_id == "<order-42@shop.example>"
    assert sorted(p.name for p in directory.iterdir()) == ["order-42@shop.example.eml"]


async def test_file_holds_exactly_the_composed_bytes(tmp_path: Path) -> None:
    seen: list[ComposedMessage] = []

    class Recording(FileTransport):
        def _write(self, composed: ComposedMessage, base: str) -> Path:
            seen.append(composed)
            return super()._write(composed, base)

    async with Recording(directory=tmp_path) as files:
        result = await files.send_mail(order(1))
    assert Path(result.response).read_bytes() == seen[0].raw


async def test_write_happens_in_a_worker_thread(tmp_path: Path) -> None:
    threads: list[threading.Thread] = []

    class Recording(FileTransport):
        def _write_atomic(self, path: Path, data: bytes) -> None:
            threads.append(threading.current_thread())
            super()._write_atomic(path, data)

    async with Recording(directory=tmp_path) as files:
        await files.send_mail(order(1))
    assert threads and threads[0] is not threading.main_thread()


async def test_same_message_id_never_overwrites(tmp_path: Path) -> None:
    async with FileTransport(directory=tmp_path) as files:
        results = await asyncio.gather(
            *(files.send_mail(order(7, subject=f"copy {i}")) for i in range(5))
        )
    names = sorted(Path(r.response).name for r in results)
    assert names == [
        "order-7@shop.example-1.eml",
        "order-7@shop.example-2.eml",
        "order-7@shop.example-3.eml",
        "order-7@shop.example-4.eml",
        "order-7@shop.example.eml",
    ]
    subjects = {Path(r.response).read_bytes().split(b"Subject: ")[1][:6] for r in results}
    assert len(subjects) == 5


async def test_many_concurrent_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    async with FileTransport(directory=tmp_path, fsync=True) as files:
        await asyncio.gather(*(files.send_mail(order(n)) for n in range(30)))
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 30
    assert all(n.endswith(".eml") and not n.startswith(".") for n in names)


async def test_envelope_file_records_bcc(tmp_path: Path) -> None:
    async with FileTransport(directory=tmp_path, envelope_file=True, suffix=".msg") as files:
        result = await files.send_mail(order(3))
    path = Path(result.response)
    assert path.suffix == ".msg"
    record = json.loads(path.with_suffix(".json").read_text())
    assert record == {
        "message_id": "<order-3@shop.example>",
        "envelope": {"from": "shop@example.com", "to": ["ada@example.org", "audit@example.org"]},
        "smtputf8": False,
        "file": path.name,
    }
    assert b"audit@example.org" not in path.read_bytes()


@pytest.mark.parametrize(
    ("message_id", "name"),
    [
        ("<abc.123@example.com>", "abc.123@example.com.eml"),
        ("<../../etc/passwd@x>", "_.._etc_passwd@x.eml"),
        ('<a\\b:c*d?e"f<g>h|i@x>', "a_b_c_d_e_f_g_h_i@x.eml"),
        ("<...hidden@x>", "hidden@x.eml"),
        ("<>", "message.eml"),
        ("<" + "x" * 300 + "@x>", "x" * MAX_STEM + ".eml"),
    ],
)
def test_file_names_are_sanitised(message_id: str, name: str) -> None:
    assert message_file_name(message_id) == name
    assert "/" not in name and "\\" not in name


async def test_missing_directory_while_open_is_retry_safe(tmp_path: Path) -> None:
    directory = tmp_path / "gone"
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.001)
    async with FileTransport(directory=directory, retry=retry) as files:
        directory.rmdir()
        with pytest.raises(ServiceUnavailableError) as info:
            await files.send_mail(order(1))
    assert info.value.outcome is Outcome.RETRY_SAFE
    assert info.value.attempts == 2
    assert not directory.exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores modes")
async def test_read_only_directory_is_access_denied(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        async with FileTransport(directory=tmp_path) as files:
            with pytest.raises(AccessDeniedError) as info:
                await files.send_mail(order(1))
        assert info.value.action == "file:write"
    finally:
        tmp_path.chmod(0o700)


async def test_directory_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(ConfigurationError) as info:
        async with FileTransport(directory=target):
            pass
    assert info.value.option == "directory"


def test_suffix_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        FileTransport(directory=tmp_path, suffix="eml")
    with pytest.raises(ConfigurationError):
        FileTransport(directory=tmp_path, suffix="./x")
    assert "FileTransport(directory=" in repr(FileTransport(directory=tmp_path))
