"""Where accepted messages go: a list in memory, or ``<id>.eml`` + ``<id>.json`` in a directory."""

from __future__ import annotations

import base64
import email.policy
import json
import os
import threading
from collections.abc import Mapping
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal, Protocol

from asyncmailer.testing._ses_api import EncodedMessage, message_id_header

__all__ = ["DirectoryStore", "MemoryStore", "MessageStore", "StoredMessage"]


class StoredMessage:
    """One message the endpoint accepted, as SES received it (read-only).

    ``raw`` is decoded from the request's base64 the first time it is read. Example::

        record = endpoint.find_by_message_id("<abc@example.com>")
        assert record.destinations == ("bob@example.com",)
        assert record.email_message()["Subject"] == "Hello"
    """

    __slots__ = (
        "_encoded",
        "action",
        "api",
        "arrival",
        "destinations",
        "message_id",
        "params",
        "received_at",
        "source",
    )

    def __init__(
        self,
        *,
        message_id: str,
        api: Literal["v1", "v2"],
        action: str,
        source: str,
        destinations: tuple[str, ...],
        raw: bytes | EncodedMessage,
        params: Mapping[str, Any],
        received_at: float,
        arrival: float,
    ) -> None:
        #: The SES message id returned to the client.
        self.message_id = message_id
        #: ``"v1"`` (query API) or ``"v2"`` (SESv2).
        self.api: Literal["v1", "v2"] = api
        #: The API action: ``SendRawEmail`` or ``SendEmail``.
        self.action = action
        #: The envelope sender: ``Source`` / ``FromEmailAddress``, else the From header.
        self.source = source
        #: Envelope recipients: the request's destinations, else To/Cc/Bcc of the raw message.
        self.destinations = destinations
        #: The other request parameters (``Tags``, ``ConfigurationSetName``, ``EmailTags``...).
        self.params = params
        #: Wall-clock receive time (:func:`time.time`).
        self.received_at = received_at
        #: Receive time on the endpoint's clock (:func:`time.monotonic` unless replaced).
        self.arrival = arrival
        self._encoded = raw if isinstance(raw, EncodedMessage) else EncodedMessage.from_bytes(raw)

    @property
    def raw(self) -> bytes:
        """The message octets (for simple/formatted sends, the MIME message composed for it)."""
        return self._encoded.decode()

    @property
    def size(self) -> int:
        """Size of the message in octets."""
        return self._encoded.size()

    @property
    def message_id_header(self) -> str | None:
        """The raw message's Message-ID without angle brackets, or None."""
        return message_id_header(self._encoded.header_block())

    def email_message(self) -> EmailMessage:
        """The raw message parsed with :data:`email.policy.default`."""
        return BytesParser(policy=email.policy.default).parsebytes(self.raw)

    def __repr__(self) -> str:
        return (
            f"StoredMessage(message_id={self.message_id!r}, api={self.api!r}, "
            f"action={self.action!r}, source={self.source!r}, "
            f"destinations={self.destinations!r}, size={self.size})"
        )

    def to_json(self, *, raw: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; ``raw`` includes the message octets base64-encoded."""
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "api": self.api,
            "action": self.action,
            "source": self.source,
            "destinations": list(self.destinations),
            "params": dict(self.params),
            "received_at": self.received_at,
            "arrival": self.arrival,
            "size": self.size,
            "message_id_header": self.message_id_header,
        }
        if raw:
            data["raw"] = base64.b64encode(self.raw).decode("ascii")
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], raw: bytes | None = None) -> StoredMessage:
        """Rebuild a record from :meth:`to_json` output (``raw`` overrides the JSON's)."""
        if raw is None:
            encoded = data.get("raw")
            raw = base64.b64decode(encoded) if encoded else b""
        api = data["api"]
        if api not in ("v1", "v2"):
            raise ValueError(f"unknown api {api!r}")
        return cls(
            message_id=data["message_id"],
            api=api,
            action=data["action"],
            source=data["source"],
            destinations=tuple(data["destinations"]),
            raw=raw,
            params=dict(data.get("params") or {}),
            received_at=float(data["received_at"]),
            arrival=float(data["arrival"]),
        )


def _normalize_id(message_id: str) -> str:
    return message_id.strip().strip("<>").strip()


def find_by_message_id(records: list[StoredMessage], message_id: str) -> StoredMessage | None:
    """The last record whose Message-ID header matches (angle brackets optional)."""
    wanted = _normalize_id(message_id)
    for record in reversed(records):
        if record.message_id_header == wanted:
            return record
    return None


class MessageStore(Protocol):
    """Storage of accepted messages."""

    #: True when :meth:`add` does blocking I/O (the endpoint then calls it in a thread).
    blocking: bool

    def add(self, record: StoredMessage) -> None:
        """Keep one accepted message."""

    def messages(self) -> list[StoredMessage]:
        """Every stored message, oldest first."""
        ...

    def clear(self) -> None:
        """Forget every stored message."""


class MemoryStore:
    """Accepted messages in a list (thread-safe)."""

    blocking = False

    def __init__(self) -> None:
        self._records: list[StoredMessage] = []
        self._lock = threading.Lock()

    def add(self, record: StoredMessage) -> None:
        """Append one record."""
        with self._lock:
            self._records.append(record)

    def messages(self) -> list[StoredMessage]:
        """A copy of the list."""
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        """Empty the list."""
        with self._lock:
            self._records.clear()


_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a file created new at ``path``, unlinking whatever held the name."""
    path.unlink(missing_ok=True)  # removes a planted symlink itself, never its target
    descriptor = os.open(path, _CREATE_NEW | getattr(os, "O_BINARY", 0), 0o644)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


class DirectoryStore:
    """Accepted messages as ``<id>.eml`` plus a ``<id>.json`` sidecar in one directory.

    The sidecar is written last, so a listed message is always complete. Reading the
    directory back (:meth:`messages`) is blocking file I/O.
    """

    blocking = True

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        #: The directory (created if missing).
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def add(self, record: StoredMessage) -> None:
        """Write ``<id>.eml`` then ``<id>.json``.

        Each file is created new (``O_EXCL | O_NOFOLLOW``): a symlink or file planted under
        one of these names is replaced as a name, never written through, so a shared or
        world-writable ``--out`` directory cannot redirect the endpoint's writes elsewhere.
        """
        _write_new(self.directory / f"{record.message_id}.eml", record.raw)
        sidecar = self.directory / f"{record.message_id}.json"
        tmp = sidecar.with_suffix(".json.tmp")
        _write_new(tmp, json.dumps(record.to_json(raw=False)).encode("utf-8"))
        tmp.replace(sidecar)  # renames the name: a symlink at ``sidecar`` is replaced, not followed

    def messages(self) -> list[StoredMessage]:
        """Read every complete message back, oldest first."""
        records = []
        for sidecar in self.directory.glob("*.json"):
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            raw = sidecar.with_suffix(".eml").read_bytes()
            records.append(StoredMessage.from_json(data, raw=raw))
        records.sort(key=lambda record: (record.arrival, record.received_at))
        return records

    def clear(self) -> None:
        """Delete the ``.eml`` / ``.json`` pairs this store wrote."""
        for sidecar in self.directory.glob("*.json"):
            sidecar.with_suffix(".eml").unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
