"""``asyncmailer bulk``: one templated message per CSV row, resumable without resending.

The results file (:mod:`._results`) is the journal that makes a rerun safe: rows already
sent are skipped, rows whose outcome is unknown are not resent unless asked. Ctrl-C (or
SIGTERM) stops feeding new rows and lets the ones in flight finish; a second Ctrl-C
aborts them (each is then recorded as ``not_sent`` or ``unknown``, as the transport
reports).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import math
import signal
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any, TextIO

import anyio.to_thread

from asyncmailer._cli._output import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    CLIError,
    echo,
    parse_headers,
    require,
)
from asyncmailer._cli._render import RenderError, Templates, is_html_template
from asyncmailer._cli._results import ResultRecord, ResultsLog, RowStatus, load_results
from asyncmailer._cli._transport import add_transport_options, make_transport
from asyncmailer.address import Address, parse_address
from asyncmailer.errors import (
    AddressError,
    DeliveryError,
    MessageError,
    Outcome,
    RateLimiterError,
    UndeliveredError,
    UsageError,
)
from asyncmailer.message import Attachment, Message
from asyncmailer.result import SendResult
from asyncmailer.templates import BulkDestination, SESTemplate
from asyncmailer.transports import SESTransport, Transport

__all__ = [
    "BulkSummary",
    "CSVRows",
    "Row",
    "add_parser",
    "classify",
    "default_concurrency",
    "row_recipient",
    "run",
    "run_bulk",
]

#: Rows read from the CSV per trip to the worker thread.
CHUNK = 500


@dataclass(frozen=True, slots=True)
class Row:
    """One recipient row of the CSV."""

    #: The ``id`` column (or ``--id-column``), else the 1-based row number.
    row_id: str
    #: The recipient address (the ``email`` column, or ``--email-column``).
    email: str
    #: Every column, for the templates.
    fields: dict[str, str]


class CSVRows:
    """The recipients CSV, read in chunks in a worker thread (never blocking the loop)."""

    def __init__(
        self, path: Path, *, email_column: str = "email", id_column: str | None = None
    ) -> None:
        #: The CSV file (UTF-8; a byte-order mark is ignored).
        self.path = path
        self.email_column = email_column
        self.id_column = id_column

    def _open(self) -> tuple[TextIO, Any]:
        try:
            handle = self.path.open(newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise CLIError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if self.email_column not in header:
            handle.close()
            raise CLIError(
                f"{self.path} has no {self.email_column!r} column (columns: {', '.join(header)})",
                hint="name the address column with --email-column",
            )
        if self.id_column is not None and self.id_column not in header:
            handle.close()
            raise CLIError(f"{self.path} has no {self.id_column!r} column (--id-column)")
        if self.id_column is None and "id" in header:
            self.id_column = "id"
        return handle, reader

    def count_sync(self) -> int:
        """Number of data rows (blocking; validates the header)."""
        handle, reader = self._open()
        with handle:
            return sum(1 for _ in reader)

    async def iterate(self) -> AsyncGenerator[Row, None]:
        """The rows, in order; ids are checked for uniqueness on the way."""
        handle, reader = await anyio.to_thread.run_sync(self._open)
        seen: set[str] = set()
        number = 0
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(_take, reader, CHUNK)
                if not chunk:
                    return
                for values in chunk:
                    number += 1
                    fields = {str(k): (v or "") for k, v in values.items() if k is not None}
                    row_id = fields.get(self.id_column, "") if self.id_column else str(number)
                    if not row_id:
                        raise CLIError(f"{self.path}: row {number} has an empty id")
                    if row_id in seen:
                        raise CLIError(
                            f"{self.path}: the row id {row_id!r} appears twice; ids must be "
                            "unique for the results file to work"
                        )
                    seen.add(row_id)
                    yield Row(row_id, fields.get(self.email_column, "").strip(), fields)
        finally:
            await anyio.to_thread.run_sync(handle.close)


def row_recipient(cell: str, *, column: str = "email") -> Address:
    """The one mailbox a row's address cell names; anything else is that row's error.

    ``"Ada <ada@example.org>"`` is fine. A list (``a@x.com, b@y.com``), a group
    (``Team: a@x.com;``), an empty cell or a malformed address raises
    :class:`~asyncmailer.errors.AddressError`: one row is one recipient, so a cell must
    never fan a message out to people who would then see each other.
    """
    if not cell.strip():
        raise AddressError(f"the {column!r} column is empty", field=column, text=cell)
    try:
        return parse_address(cell, field=column)
    except AddressError as exc:
        raise AddressError(
            f"the {column!r} column must hold exactly one valid address ({exc})",
            field=column,
            text=cell,
        ) from exc


def _take(reader: Iterator[dict[str, str]], count: int) -> list[dict[str, str]]:
    return [row for _, row in zip(range(count), reader, strict=False)]


@dataclass
class BulkSummary:
    """Counts of a bulk run, updated as outcomes arrive."""

    #: Rows in the CSV (when counted up front).
    total: int | None = None
    #: Rows handled so far (sent, failed, skipped...).
    done: int = 0
    #: Sent by this run.
    sent: int = 0
    #: Refused for good by this run (or invalid rows).
    failed: int = 0
    #: Not sent by this run, safe to retry (throttled, aborted).
    not_sent: int = 0
    #: Outcome unknown in this run (connection lost, aborted in flight).
    unknown: int = 0
    #: Skipped: sent by an earlier run.
    already_sent: int = 0
    #: Skipped: failed in an earlier run (``--retry-failed`` resends them).
    skipped_failed: int = 0
    #: Skipped: unknown in an earlier run (``--retry-unknown`` resends them).
    skipped_unknown: int = 0
    #: Rows a crashed run left as ``sending``, now recorded as ``unknown``.
    marked_unknown: int = 0
    #: True when a signal stopped the run early.
    interrupted: bool = False
    #: Completion times of this run's sends (for the rate shown).
    recent: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=200))

    @property
    def complete(self) -> bool:
        """True when every row is sent (now or earlier) and the run was not interrupted."""
        return not self.interrupted and (
            self.failed + self.not_sent + self.unknown + self.skipped_failed + self.skipped_unknown
            == 0
        )

    def rate(self, window: float = 5.0) -> float:
        """Sends per second over the last ``window`` seconds."""
        if not self.recent:
            return 0.0
        now = time.monotonic()
        times = [t for t in self.recent if now - t <= window]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)

    def format(self) -> str:
        """One paragraph for the end of the run."""
        parts = [f"sent {self.sent}"]
        for count, label in (
            (self.failed, "failed"),
            (self.not_sent, "not sent (safe to retry)"),
            (self.unknown, "unknown"),
            (self.already_sent, "already sent before"),
            (self.skipped_failed, "failed before (skipped; --retry-failed)"),
            (self.skipped_unknown, "unknown before (skipped; --retry-unknown)"),
        ):
            if count:
                parts.append(f"{count} {label}")
        if self.marked_unknown:
            parts.append(
                f"{self.marked_unknown} left mid-send by an earlier run (recorded as unknown)"
            )
        return ", ".join(parts)


_BY_OUTCOME: dict[Outcome, RowStatus] = {
    Outcome.RETRY_SAFE: "not_sent",
    Outcome.AMBIGUOUS: "unknown",
    Outcome.FINAL: "failed",
}


def classify(outcome: SendResult | BaseException) -> tuple[RowStatus, str, str]:
    """``(status, message_id, error)`` for one send outcome."""
    if isinstance(outcome, SendResult):
        return "sent", outcome.message_id, ""
    error = f"{type(outcome).__name__}: {outcome}"
    message_id = getattr(outcome, "message_id", None) or ""
    if isinstance(outcome, DeliveryError):
        return _BY_OUTCOME[outcome.outcome], message_id, error
    if isinstance(outcome, MessageError):
        return "failed", message_id, error
    if isinstance(outcome, (UsageError, RateLimiterError)):
        return "not_sent", message_id, error  # refused before any request was made
    return "unknown", message_id, error


def _domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    domain = address.rpartition("@")[2] if "@" in address else ""
    return domain or "asyncmailer.invalid"


async def run_bulk(
    transport: Transport,
    rows: CSVRows,
    templates: Templates | None,
    results: Path,
    *,
    ses_template: SESTemplate | None = None,
    sender: str,
    reply_to: str | None = None,
    attachments: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    concurrency: int | None = None,
    retry_failed: bool = False,
    retry_unknown: bool = False,
    stop: asyncio.Event | None = None,
    summary: BulkSummary | None = None,
    on_update: Callable[[BulkSummary], object] | None = None,
) -> BulkSummary:
    """Send one message per row through the open ``transport``; journal into ``results``.

    With ``ses_template`` (an SES transport), SES renders the rows' messages: each row is
    one destination of ``send_bulk`` (``SendBulkEmail``, 50 per request) with the row's
    columns as its template data; the journal works the same, one row per destination.
    Setting ``stop`` stops feeding rows; those already handed to the transport finish.
    """
    if (templates is None) == (ses_template is None):
        raise CLIError("run_bulk needs Jinja2 templates or an SES template (exactly one)")
    summary = summary if summary is not None else BulkSummary()
    stop = stop if stop is not None else asyncio.Event()
    previous = await anyio.to_thread.run_sync(load_results, results)
    log = ResultsLog(results)
    await anyio.to_thread.run_sync(log.open_sync)
    crashed = [r for r in previous.values() if r.status == "sending"]
    if crashed:
        marked = [
            ResultRecord(
                r.row_id,
                r.email,
                "unknown",
                r.message_id,
                "interrupted while sending: it may have been sent",
            )
            for r in crashed
        ]
        await log.append(*marked)
        for record in marked:
            previous[record.row_id] = record
        summary.marked_unknown = len(marked)
    domain = _domain(sender)
    in_flight: collections.deque[tuple[Row, str]] = collections.deque()
    fatal: list[BaseException] = []
    finished = False

    def update() -> None:
        if on_update is not None:
            on_update(summary)

    def skip(prior: ResultRecord) -> bool:
        status = prior.status
        if status == "sent":
            summary.already_sent += 1
        elif status == "failed" and not retry_failed:
            summary.skipped_failed += 1
        elif status == "unknown" and not retry_unknown:
            summary.skipped_unknown += 1
        else:
            return False
        summary.done += 1
        return True

    async def prepare(row: Row) -> Message | BulkDestination | None:
        """The row's message; None when the row is skipped or cannot be rendered."""
        prior = previous.get(row.row_id)
        if prior is not None:
            if prior.email != row.email:
                raise CLIError(
                    f"row {row.row_id} was {prior.email} in {results} but is {row.email} in "
                    "the CSV: the CSV changed since that run",
                    hint="use a new --results file for a different CSV",
                )
            if skip(prior):
                update()
                return None
        message_id = f"<{uuid.uuid4().hex}@{domain}>" if ses_template is None else ""
        try:
            recipient = row_recipient(row.email, column=rows.email_column)
            rendered = templates.render(row.fields) if templates is not None else None
        except (RenderError, AddressError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            failed = ResultRecord(row.row_id, row.email, "failed", "", error)
            await log.append(failed)
            summary.failed += 1
            summary.done += 1
            update()
            return None
        # Journal first: if the process dies from here on, the row is known to be in doubt.
        await log.append(ResultRecord(row.row_id, row.email, "sending", message_id))
        in_flight.append((row, message_id))
        if rendered is None:  # SES renders it: the row's columns are the template data
            return BulkDestination(to=recipient, data=row.fields)
        return Message(
            from_=sender,
            to=recipient,
            reply_to=reply_to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            attachments=[Attachment(path=path) for path in attachments],
            headers=list(headers) or None,
            message_id=message_id,
        )

    async def messages() -> AsyncIterator[Any]:
        try:
            async with contextlib.aclosing(rows.iterate()) as reader:
                async for row in reader:
                    if stop.is_set():
                        return
                    message = await prepare(row)
                    if message is not None:
                        yield message
        except Exception as exc:  # send_many must not see it: keep it, stop feeding
            fatal.append(exc)
            stop.set()

    try:
        if ses_template is not None:
            if not isinstance(transport, SESTransport):
                raise CLIError("--ses-template needs --transport ses")
            if attachments or headers:
                raise CLIError(
                    "--attach and --header cannot go with --ses-template: SES builds the "
                    "message from the template"
                )
            outcomes: AsyncGenerator[Any, None] = transport.send_bulk(
                ses_template,
                messages(),
                from_=sender,
                reply_to=reply_to,
                concurrency=max(1, math.ceil((concurrency or 50) / 50)),
            )
        else:
            outcomes = transport.send_many(messages(), concurrency=concurrency)
        async with contextlib.aclosing(outcomes):
            async for outcome in outcomes:
                row, message_id = in_flight.popleft()
                status, result_id, error = classify(outcome)
                await log.append(
                    ResultRecord(row.row_id, row.email, status, result_id or message_id, error)
                )
                if status == "sent":
                    summary.sent += 1
                    summary.recent.append(time.monotonic())
                elif status == "failed":
                    summary.failed += 1
                elif status == "not_sent":
                    summary.not_sent += 1
                else:
                    summary.unknown += 1
                summary.done += 1
                update()
        finished = True
    finally:
        if in_flight:  # only after an unexpected error: be conservative
            with contextlib.suppress(Exception):
                await log.append(
                    *(
                        ResultRecord(row.row_id, row.email, "unknown", mid, "interrupted")
                        for row, mid in in_flight
                    )
                )
        await anyio.to_thread.run_sync(log.close_sync)
        if finished:
            await anyio.to_thread.run_sync(log.compact_sync)
    if fatal:
        raise fatal[0]
    summary.interrupted = stop.is_set()
    return summary


class _Signals:
    """First SIGINT/SIGTERM: stop feeding rows. Second: abort the sends in progress."""

    def __init__(self, stop: asyncio.Event, transport: Transport) -> None:
        self.stop = stop
        self.transport = transport
        self.count = 0
        self._abort: asyncio.Task[None] | None = None
        self._installed: list[int] = []

    def __enter__(self) -> _Signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._handle)
            except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
                continue
            self._installed.append(sig)
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)

    def _handle(self) -> None:
        self.count += 1
        self.stop.set()
        if self.count == 1:
            echo(
                "\nstopping: finishing the messages in flight (Ctrl-C again to abort them)",
                err=True,
            )
        elif self._abort is None:
            echo("\naborting the messages in flight", err=True)
            self.transport.drain_timeout = 0
            self._abort = asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        # Each aborted send is reported through send_many as not_sent or unknown.
        with contextlib.suppress(UndeliveredError):
            await self.transport.aclose()


def _progress(summary: BulkSummary, enabled: bool) -> Any:
    """A rich progress bar on stderr showing the rate, or None."""
    if not enabled:
        return None
    progress_mod = require("rich.progress")
    console_mod = require("rich.console")
    console = console_mod.Console(stderr=True)
    if not console.is_terminal:
        return None
    return progress_mod.Progress(
        progress_mod.TextColumn("[bold]bulk"),
        progress_mod.BarColumn(),
        progress_mod.MofNCompleteColumn(),
        progress_mod.TextColumn("{task.fields[rate]:>6.1f} msg/s"),
        progress_mod.TextColumn("{task.fields[status]}"),
        progress_mod.TimeElapsedColumn(),
        progress_mod.TimeRemainingColumn(),
        console=console,
        refresh_per_second=5,
    )


def default_concurrency(transport: Transport) -> int:
    """Half a second of sends at the transport's rate, within ``[2, max_connections]``.

    Rows handed to the transport wait there for the rate limiter; the fewer wait, the
    fewer a SIGKILL leaves with an unknown outcome. Half a second of sending covers a
    round trip of up to 500 ms at the full rate.
    """
    ceiling = transport.max_connections or 32
    limiter = transport.rate_limiter
    if limiter is None:
        return ceiling
    return max(2, min(ceiling, math.ceil(limiter.rate / 2)))


def add_parser(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the ``bulk`` sub-command."""
    parser = add(
        "bulk",
        help="send one templated message per CSV row, resumably",
        description=(
            "Render Jinja2 templates (sandboxed; HTML autoescaped) for each row of a CSV and "
            "send the messages at a steady rate. Every outcome is journaled to --results: "
            "run the same command again to resume without resending."
        ),
    )
    parser.add_argument("--csv", required=True, type=Path, metavar="FILE", help="recipients")
    parser.add_argument(
        "--template",
        type=Path,
        metavar="FILE",
        help="body template: HTML if its name has .html/.htm (body.html.j2), else text",
    )
    parser.add_argument("--text-template", type=Path, metavar="FILE", help="plain text body")
    parser.add_argument("--html-template", type=Path, metavar="FILE", help="HTML body")
    parser.add_argument(
        "--subject-template", metavar="TEMPLATE", help="subject, e.g. 'Hello {{ name }}'"
    )
    parser.add_argument(
        "--results", required=True, type=Path, metavar="FILE", help="results CSV (the journal)"
    )
    parser.add_argument("--from", dest="from_", required=True, metavar="ADDRESS")
    parser.add_argument("--reply-to", metavar="ADDRESS")
    parser.add_argument("--attach", action="append", default=[], metavar="FILE")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    parser.add_argument(
        "--email-column",
        default="email",
        metavar="NAME",
        help="the recipient column: exactly one address per row (default: email)",
    )
    parser.add_argument(
        "--id-column", metavar="NAME", help="unique row id column (default: 'id', else row number)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="messages handed to the transport at once (default: half a second's worth at "
        "the sending rate, at most --max-connections)",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="resend rows that failed in an earlier run"
    )
    parser.add_argument(
        "--retry-unknown",
        action="store_true",
        help="resend rows whose outcome is unknown (they may be delivered twice)",
    )
    parser.add_argument(
        "--ses-template",
        metavar="NAME",
        help="let SES render a stored template (SESv2 SendBulkEmail, 50 rows per request); "
        "each row's columns are its template data",
    )
    parser.add_argument(
        "--ses-inline",
        action="store_true",
        help="send --subject-template/--text-template/--html-template as an SES inline "
        "template (SES's {{var}} syntax, rendered by SES) with SendBulkEmail",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_transport_options(parser, default_rate="auto")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """``bulk``: send, journal, print a summary; exit 0 only if every row is sent."""
    text_path, html_path = args.text_template, args.html_template
    if args.template is not None:
        if is_html_template(args.template):
            html_path = html_path or args.template
        else:
            text_path = text_path or args.template
    if args.transport == "ses" and args.sending_rate is None:
        args.sending_rate = "auto"
    if args.transport != "ses" and args.sending_rate == "auto":
        args.sending_rate = None
    templates: Templates | None = None
    ses_template = await anyio.to_thread.run_sync(lambda: _ses_template(args, text_path, html_path))
    if ses_template is None:
        templates = await anyio.to_thread.run_sync(
            lambda: Templates.load(
                subject=args.subject_template, text_path=text_path, html_path=html_path
            )
        )
    rows = CSVRows(args.csv, email_column=args.email_column, id_column=args.id_column)
    summary = BulkSummary(total=await anyio.to_thread.run_sync(rows.count_sync))
    progress = _progress(summary, not args.no_progress)
    stop = asyncio.Event()
    task_id: Any = None

    def on_update(current: BulkSummary) -> None:
        if progress is not None:
            progress.update(
                task_id,
                completed=current.done,
                rate=current.rate(),
                status=f"failed {current.failed}" if current.failed else "",
            )

    async with make_transport(args) as transport:
        concurrency = args.concurrency or default_concurrency(transport)
        with _Signals(stop, transport), progress or contextlib.nullcontext():
            if progress is not None:
                task_id = progress.add_task("bulk", total=summary.total, rate=0.0, status="")
            await run_bulk(
                transport,
                rows,
                templates,
                args.results,
                ses_template=ses_template,
                sender=args.from_,
                reply_to=args.reply_to,
                attachments=args.attach,
                headers=parse_headers(args.header),
                concurrency=concurrency,
                retry_failed=args.retry_failed,
                retry_unknown=args.retry_unknown,
                stop=stop,
                summary=summary,
                on_update=on_update,
            )
    echo(f"{summary.format()}; results in {args.results}")
    if summary.interrupted:
        echo("interrupted: run the same command again to send the remaining rows", err=True)
        return EXIT_INTERRUPTED
    return 0 if summary.complete else EXIT_FAILURE


def _ses_template(
    args: argparse.Namespace, text_path: Path | None, html_path: Path | None
) -> SESTemplate | None:
    """The SES template ``--ses-template`` / ``--ses-inline`` ask for (reads files: blocking)."""
    if args.ses_template is None and not args.ses_inline:
        return None
    if args.transport != "ses":
        raise CLIError("--ses-template and --ses-inline need --transport ses")
    try:
        if args.ses_template is not None:
            if args.ses_inline or text_path or html_path or args.subject_template:
                raise CLIError(
                    "--ses-template names a stored template: drop --ses-inline and the "
                    "--*-template options"
                )
            return SESTemplate(name=args.ses_template)
        if not args.subject_template or (text_path is None and html_path is None):
            raise CLIError(
                "--ses-inline needs --subject-template and a body (--text-template, "
                "--html-template or --template)"
            )

        def read(path: Path | None) -> str | None:
            if path is None:
                return None
            try:
                return path.read_text(encoding="utf-8")
            except OSError as exc:
                raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from exc

        return SESTemplate(
            subject=args.subject_template, text=read(text_path), html=read(html_path)
        )
    except MessageError as exc:
        raise CLIError(f"invalid SES template: {exc}") from exc
