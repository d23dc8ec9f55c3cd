"""Write each message to a directory as one ``.eml`` file: previews, staging, audit trails.

Example::

    async with FileTransport(directory="outbox") as files:
        result = await files.send_mail(from_="a@example.com", to="b@example.com", text="Hi")
        print(result.response)   # outbox/20260101.abc123@example.com.eml

The file name comes from the Message-ID (unsafe characters replaced); a name already
taken gets a ``-1``, ``-2``... suffix, so nothing is overwritten. Each file appears
atomically: the message is written to a hidden temporary file in the same directory,
then renamed, so a reader never sees half a message. The writing happens in a worker
thread (anyio), never on the event loop.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from asyncmailer.errors import (
    AccessDeniedError,
    ConfigurationError,
    ServiceUnavailableError,
)
from asyncmailer.message import Message
from asyncmailer.options import TransportOptions
from asyncmailer.result import ComposedMessage
from asyncmailer.transports.base import Delivery, Transport

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["FileTransport", "message_file_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")
#: Longest file stem kept from a Message-ID (file systems allow 255 octets per name).
MAX_STEM = 180


def message_file_name(message_id: str, suffix: str = ".eml") -> str:
    """A safe file name for a Message-ID: ``<a/b@x>`` → ``a_b@x.eml``.

    Only ``A-Z a-z 0-9 . _ @ + = -`` are kept (others become ``_``), leading dots are
    removed (no hidden files), and the stem is cut at :data:`MAX_STEM` characters.
    """
    stem = _UNSAFE.sub("_", message_id.strip().strip("<>")).lstrip(".")[:MAX_STEM]
    return (stem or "message") + suffix


class FileTransport(Transport):
    """Writes each message to ``directory`` as an ``.eml`` file; ``response`` is its path.

    - ``directory``: created (with parents) on open when missing.
    - ``suffix``: file extension (default ``".eml"``).
    - ``envelope_file``: also write ``<name>.json`` with the envelope (sender,
      recipients, Bcc included: the ``.eml`` does not show Bcc) and the Message-ID.
    - ``fsync``: flush each file to disk before it is renamed into place (durability
      across a power loss, at a cost).

    The other options are those of every transport (``limits``, ``sending_rate``,
    ``max_connections``, ``retry``, ``dkim``; see :class:`Transport`). A permission error raises
    :class:`~asyncmailer.errors.AccessDeniedError`; another I/O error (disk full...)
    :class:`~asyncmailer.errors.ServiceUnavailableError` (retry-safe: nothing was left
    behind).
    """

    name = "file"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        suffix: str = ".eml",
        envelope_file: bool = False,
        fsync: bool = False,
        **options: Unpack[TransportOptions],
    ) -> None:
        super().__init__(**options)
        if not suffix.startswith(".") or _UNSAFE.search(suffix):
            raise ConfigurationError(f"invalid suffix {suffix!r}", option="suffix")
        #: Where the files go.
        self.directory = Path(directory)
        #: File extension, with its dot.
        self.suffix = suffix
        #: Whether a JSON envelope file is written next to each message.
        self.envelope_file = envelope_file
        #: Whether each file is fsync'ed before its rename.
        self.fsync = fsync
        # Names handed out but maybe not on disk yet (concurrent sends of one Message-ID).
        self._reserved: set[str] = set()
        self._reserve_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FileTransport(directory={str(self.directory)!r}, state={self.state.value!r})"

    async def _open(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._make_directory)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the directory {str(self.directory)!r}: {exc.strerror}",
                option="directory",
            ) from exc

    def _make_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.directory.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(self.directory))

    async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
        base = message_file_name(composed.message_id, self.suffix)
        try:
            path = await anyio.to_thread.run_sync(self._write, composed, base)
        except PermissionError as exc:
            raise AccessDeniedError(
                f"cannot write to {str(self.directory)!r}: {exc.strerror}",
                action="file:write",
                service_message=str(exc),
            ) from exc
        except OSError as exc:
            raise ServiceUnavailableError(
                f"cannot write to {str(self.directory)!r}: {exc.strerror or exc}",
                code=exc.errno,
                service_message=str(exc),
            ) from exc
        return Delivery(response=str(path), message_id=composed.message_id)

    # The whole write runs in one worker thread: fewer thread hops than one per call.
    def _write(self, composed: ComposedMessage, base: str) -> Path:
        stem = base[: -len(self.suffix)]
        final = self._claim(stem)
        try:
            self._write_atomic(final, composed.raw)
            if self.envelope_file:
                record = {
                    "message_id": composed.message_id,
                    "envelope": {"from": composed.envelope.from_, "to": list(composed.envelope.to)},
                    "smtputf8": composed.smtputf8,
                    "file": final.name,
                }
                data = json.dumps(record, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
                self._write_atomic(final.with_suffix(".json"), data)
        finally:
            with self._reserve_lock:
                self._reserved.discard(final.name)
        return final

    def _claim(self, stem: str) -> Path:
        # Worker threads may claim concurrently (two sends with one Message-ID).
        n = 0
        with self._reserve_lock:
            while True:
                name = f"{stem}{self.suffix}" if n == 0 else f"{stem}-{n}{self.suffix}"
                path = self.directory / name
                if name not in self._reserved and not path.exists():
                    self._reserved.add(name)
                    return path
                n += 1

    def _write_atomic(self, path: Path, data: bytes) -> None:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(temp, "xb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
