"""The results file of ``asyncmailer bulk``: an append-only CSV journal, one line per event.

Before a row's message is handed to the transport a ``sending`` line is written and
flushed; its outcome follows as a second line. The last line of a row wins. So after a
crash, even a SIGKILL, every row is in one of these states:

- no line: never attempted, send it;
- ``sent``: done, never send it again;
- ``not_sent``: nothing was sent (throttled, aborted...): safe to send again;
- ``failed``: refused for good (bad address, rejected): not retried unless asked;
- ``unknown``: may or may not have been sent: not retried unless asked;
- ``sending`` with no outcome after it: the process died while sending — the outcome is
  unknown, and the next run records it as ``unknown``.

A run that ends normally rewrites the file with one line per row (atomically).

The file is never opened through a symbolic link, and only a regular file is used: a link
planted at ``--results`` (or next to it) must not make the journal write somewhere else.
The rewrite goes to a new file with a random name, created exclusively next to the
results file, then renamed over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime
import io
import os
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TextIO, cast

import anyio.to_thread

from asyncmailer._cli._output import CLIError

__all__ = ["FIELDS", "ResultRecord", "ResultsLog", "RowStatus", "load_results"]

RowStatus = Literal["sending", "sent", "not_sent", "failed", "unknown"]
STATUSES: frozenset[str] = frozenset({"sending", "sent", "not_sent", "failed", "unknown"})
#: The columns of the results file.
FIELDS = ("row_id", "email", "status", "message_id", "error", "time")
HEADER = ",".join(FIELDS) + "\n"


def now_iso() -> str:
    """The current UTC time, ISO 8601, to the millisecond."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """One line of the results file."""

    #: The row's id: the ``id`` column (or ``--id-column``), else its 1-based row number.
    row_id: str
    #: The recipient.
    email: str
    #: What happened (see the module docstring).
    status: RowStatus
    #: ``sent``: the Message-ID recipients see; otherwise the Message-ID we composed.
    message_id: str = ""
    #: The error, for rows not sent: ``ClassName: message``.
    error: str = ""
    #: When the line was written (UTC).
    time: str = ""

    def as_row(self) -> list[str]:
        """The CSV fields, in :data:`FIELDS` order."""
        return [self.row_id, self.email, self.status, self.message_id, self.error, self.time]


#: Refuse a symbolic link as the last component (0 where the platform has no such flag).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Never block opening a FIFO planted at the path (it is then refused as not a regular file).
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def open_regular(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that refuses a symbolic link or anything but a regular file (blocking).

    Returns the descriptor; raises :class:`CLIError` for a link, a directory, a device or a
    FIFO, and lets :class:`FileNotFoundError` through.
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK | getattr(os, "O_BINARY", 0), mode)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise CLIError(
                f"{path} is a symbolic link: the results file must be a regular file",
                hint="pass the real path with --results",
            ) from exc
        raise CLIError(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CLIError(
                f"{path} is not a regular file (a directory, device or FIFO)",
                hint="pass the path of a file with --results",
            )
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def load_results(path: Path) -> dict[str, ResultRecord]:
    """Read a results file (blocking): the last record of each row, in first-seen order."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    with open(fd, newline="", encoding="utf-8") as handle:
        return _read_records(handle, path)


def _read_records(handle: TextIO, path: Path) -> dict[str, ResultRecord]:
    records: dict[str, ResultRecord] = {}
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        return records
    if tuple(header) != FIELDS:
        raise CLIError(
            f"{path} is not an asyncmailer results file (its header is {header!r})",
            hint="pass a new --results file, or the one a previous bulk run wrote",
        )
    for fields in reader:
        if len(fields) != len(FIELDS) or fields[2] not in STATUSES:
            # Only a line cut short by a crash can be malformed (the last one): skip it.
            continue
        row_id, email, status, message_id, error, time = fields
        records[row_id] = ResultRecord(
            row_id, email, cast(RowStatus, status), message_id, error, time
        )
    return records


def _encode(records: Iterable[ResultRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for record in records:
        writer.writerow(record.as_row())
    return buffer.getvalue()


class ResultsLog:
    """Appends records to the results file, flushing each write, without blocking the loop.

    Writes happen in a worker thread, one at a time, in the order they were asked for.
    """

    def __init__(self, path: Path) -> None:
        #: The results file.
        self.path = path
        self._file: TextIO | None = None
        self._lock = asyncio.Lock()

    def open_sync(self) -> None:
        """Open for appending (blocking); write the header if the file is new or empty.

        A new file is created readable by its owner only (it lists recipients); a
        symbolic link or a non-regular file at the path is refused (:class:`CLIError`).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        # Kept open for the run (close_sync closes it); O_APPEND puts every write at the end.
        handle = open(fd, "a", newline="", encoding="utf-8")  # noqa: SIM115
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                handle.write(HEADER)
            else:
                # A crash may have cut the last line short; start ours on a fresh line.
                os.lseek(fd, size - 1, os.SEEK_SET)
                if os.read(fd, 1) != b"\n":
                    handle.write("\n")
            handle.flush()
        except BaseException:
            handle.close()
            raise
        self._file = handle

    def _append_sync(self, text: str) -> None:
        assert self._file is not None
        self._file.write(text)
        self._file.flush()

    async def append(self, *records: ResultRecord) -> None:
        """Write ``records`` and flush them to the operating system."""
        text = _encode(replace(r, time=r.time or now_iso()) for r in records)
        async with self._lock:
            await anyio.to_thread.run_sync(self._append_sync, text)

    def close_sync(self) -> None:
        """Close the file (blocking)."""
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()

    def compact_sync(self) -> None:
        """Rewrite the file with the last record of each row (temp file + atomic rename).

        The temporary file gets a random name in the same directory and is created with
        ``O_CREAT | O_EXCL | O_NOFOLLOW`` (:func:`tempfile.mkstemp`): nothing planted
        there in advance can redirect the write. It keeps the journal's permissions.
        """
        fd = open_regular(self.path, os.O_RDONLY)
        with open(fd, newline="", encoding="utf-8") as current:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            records = _read_records(current, self.path)
        tmp_fd, tmp_name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with open(tmp_fd, "w", newline="", encoding="utf-8") as handle:
                if hasattr(os, "fchmod"):
                    os.fchmod(handle.fileno(), mode)
                handle.write(HEADER + _encode(records.values()))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
