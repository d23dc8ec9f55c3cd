"""An in-memory outbox for tests: every sent message is kept, parsed on demand, and searchable.

Example::

    async with MemoryTransport() as outbox:
        await outbox.send_mail(from_="shop@example.com", to="ada@example.com",
                               subject="Welcome", text="Hi Ada")
        sent = outbox.assert_sent(to="ada@example.com", subject="Welcome")
        assert "Hi Ada" in sent.text

It goes through the same ``send_mail`` as every transport (composition, checks, the rate
limiter, retries), so it is a faithful stand-in in your application's tests. The pytest
plugin gives you one, open, as the ``outbox`` fixture. :meth:`MemoryTransport.fail_next`
makes the next sends fail, to test your error handling.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from email.message import EmailMessage
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

from asyncmailer.errors import ConfigurationError
from asyncmailer.message import Envelope, Message
from asyncmailer.options import TransportOptions
from asyncmailer.result import ComposedMessage
from asyncmailer.transports.base import Delivery, Transport

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["MemoryTransport", "SentMessage"]

#: What a text criterion accepts: a substring / exact value, or a compiled pattern.
TextMatch = str | re.Pattern[str]

_PARSER = BytesParser(policy=email.policy.default)


class SentMessage:
    """One message a :class:`MemoryTransport` accepted, with parsed accessors.

    ``composed`` is exactly what a real transport would have sent; ``message`` is the
    :class:`~asyncmailer.Message` you passed (None for raw or ``EmailMessage`` input).
    The parsed :attr:`email` is built on first access.
    """

    __slots__ = ("_email", "composed", "index", "message")

    def __init__(self, composed: ComposedMessage, message: Message | None, index: int) -> None:
        #: The composed message: ``raw``, ``envelope``, ``message_id``, ``smtputf8``.
        self.composed = composed
        #: The original :class:`~asyncmailer.Message`, when one was sent.
        self.message = message
        #: Position in the outbox (0 for the first message sent since the last ``clear``).
        self.index = index
        self._email: EmailMessage | None = None

    def __repr__(self) -> str:
        return (
            f"SentMessage(#{self.index} {self.message_id} from={self.envelope.from_!r} "
            f"to={list(self.envelope.to)!r} subject={self.subject!r})"
        )

    @property
    def raw(self) -> bytes:
        """The message octets (CRLF line endings)."""
        return self.composed.raw

    @property
    def envelope(self) -> Envelope:
        """Envelope sender and every recipient (To + Cc + Bcc)."""
        return self.composed.envelope

    @property
    def message_id(self) -> str:
        """The ``Message-ID`` header value, with angle brackets."""
        return self.composed.message_id

    @property
    def email(self) -> EmailMessage:
        """The message parsed with the stdlib (``email.policy.default``)."""
        if self._email is None:
            self._email = _PARSER.parsebytes(self.composed.raw)
        assert self._email is not None
        return self._email

    @property
    def subject(self) -> str | None:
        """The decoded ``Subject``, or None."""
        value = self.email["Subject"]
        return None if value is None else str(value)

    @property
    def from_(self) -> str | None:
        """The decoded ``From`` header, or None."""
        value = self.email["From"]
        return None if value is None else str(value)

    @property
    def to(self) -> tuple[str, ...]:
        """Addresses (``addr-spec``) of the ``To`` header."""
        return self._addresses("To")

    @property
    def cc(self) -> tuple[str, ...]:
        """Addresses (``addr-spec``) of the ``Cc`` header."""
        return self._addresses("Cc")

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every envelope recipient: To, Cc and Bcc."""
        return self.composed.envelope.to

    @property
    def text(self) -> str | None:
        """The decoded ``text/plain`` body, or None."""
        return self._body("plain")

    @property
    def html(self) -> str | None:
        """The decoded ``text/html`` body, or None."""
        return self._body("html")

    @property
    def attachments(self) -> list[EmailMessage]:
        """The attachment parts (``.get_filename()``, ``.get_content_type()``...)."""
        return list(self.email.iter_attachments())

    def header(self, name: str) -> str | None:
        """The decoded value of the header ``name`` (the first one), or None."""
        value = self.email[name]
        return None if value is None else str(value)

    def _addresses(self, name: str) -> tuple[str, ...]:
        values = self.email.get_all(name) or []
        return tuple(addr for _, addr in email.utils.getaddresses([str(v) for v in values]))

    def _body(self, subtype: str) -> str | None:
        part = self.email.get_body(preferencelist=(subtype,))
        if part is None or part.get_content_type() != f"text/{subtype}":
            return None
        content = part.get_content()
        return content if isinstance(content, str) else None

    def matches(
        self,
        *,
        to: str | Sequence[str] | None = None,
        from_: str | None = None,
        subject: TextMatch | None = None,
        text: TextMatch | None = None,
        html: TextMatch | None = None,
        headers: Mapping[str, TextMatch] | None = None,
        message_id: str | None = None,
        attachment: str | None = None,
        where: Callable[[SentMessage], bool] | None = None,
    ) -> bool:
        """True when every given criterion holds (see :meth:`MemoryTransport.find`)."""
        if to is not None:
            wanted = [to] if isinstance(to, str) else list(to)
            have = {a.lower() for a in self.recipients}
            if not all(_addr(w) in have for w in wanted):
                return False
        if from_ is not None:
            senders = {self.envelope.from_.lower()}
            senders.update(a.lower() for a in self._addresses("From"))
            if _addr(from_) not in senders:
                return False
        if subject is not None and not _match_exact(subject, self.subject):
            return False
        if text is not None and not _match_contains(text, self.text):
            return False
        if html is not None and not _match_contains(html, self.html):
            return False
        for name, value in (headers or {}).items():
            if not any(_match_exact(value, str(v)) for v in self.email.get_all(name) or []):
                return False
        if message_id is not None and message_id.strip("<>") != self.message_id.strip("<>"):
            return False
        if attachment is not None and attachment not in {
            part.get_filename() for part in self.attachments
        }:
            return False
        return where is None or where(self)


def _addr(text: str) -> str:
    return (email.utils.parseaddr(text)[1] or text).strip().lower()


def _match_exact(wanted: TextMatch, value: str | None) -> bool:
    if value is None:
        return False
    if isinstance(wanted, re.Pattern):
        return wanted.search(value) is not None
    return wanted == value


def _match_contains(wanted: TextMatch, value: str | None) -> bool:
    if value is None:
        return False
    if isinstance(wanted, re.Pattern):
        return wanted.search(value) is not None
    return wanted in value


class MemoryTransport(Transport):
    """A transport that keeps every message in memory: the outbox of your tests.

    Options are those of every transport (``limits``, ``sending_rate``,
    ``max_connections``, ``retry``, ``dkim``; see :class:`Transport`). Sent messages are in
    :attr:`messages` (also ``len(outbox)``, ``outbox[0]``, ``for m in outbox``), as
    :class:`SentMessage` objects. Find and assert with :meth:`find`,
    :meth:`assert_sent`, :meth:`assert_not_sent` and :meth:`assert_no_mail`; inject
    failures with :meth:`fail_next`.
    """

    name = "memory"

    def __init__(self, **options: Unpack[TransportOptions]) -> None:
        super().__init__(**options)
        self._messages: list[SentMessage] = []
        self._failures_next: list[Exception] = []
        #: Delivery attempts, failed ones included (reset by :meth:`clear`).
        self.attempts = 0

    def __repr__(self) -> str:
        return f"MemoryTransport(messages={len(self._messages)}, state={self.state.value!r})"

    # ------------------------------------------------------------ the outbox

    @property
    def messages(self) -> list[SentMessage]:
        """The messages sent, oldest first (a copy)."""
        return list(self._messages)

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[SentMessage]:
        return iter(list(self._messages))

    def __getitem__(self, index: int) -> SentMessage:
        return self._messages[index]

    def __bool__(self) -> bool:
        # A transport is always truthy, even with an empty outbox (`if transport:`).
        return True

    @property
    def last(self) -> SentMessage:
        """The most recent message; AssertionError when none was sent."""
        if not self._messages:
            raise AssertionError("no message was sent")
        return self._messages[-1]

    def clear(self) -> None:
        """Forget the messages sent, pending injected failures and the attempt count."""
        self._messages.clear()
        self._failures_next.clear()
        self.attempts = 0

    def fail_next(self, error: Exception, *, times: int = 1) -> None:
        """Make the next ``times`` delivery attempts raise ``error`` (nothing is stored).

        Use an :mod:`asyncmailer.errors` delivery error to see the transport's real
        behaviour: a retry-safe one (``SendingRateExceededError("slow down")``) is
        retried under the retry policy and consumes the next injected failure; a final
        one (``MessageRejectedError("no")``) is raised by ``send_mail``. Failures queue
        up in order across calls; each attempt raises a copy of ``error``.
        """
        if times < 1:
            raise ConfigurationError("times must be at least 1", option="times")
        if not isinstance(error, Exception):
            raise ConfigurationError("error must be an exception instance", option="error")
        self._failures_next.extend([error] * times)

    # ------------------------------------------------------------ assertions

    def find(
        self,
        *,
        to: str | Sequence[str] | None = None,
        from_: str | None = None,
        subject: TextMatch | None = None,
        text: TextMatch | None = None,
        html: TextMatch | None = None,
        headers: Mapping[str, TextMatch] | None = None,
        message_id: str | None = None,
        attachment: str | None = None,
        where: Callable[[SentMessage], bool] | None = None,
    ) -> list[SentMessage]:
        """The sent messages matching every given criterion, oldest first.

        - ``to``: an address, or several, that must all be envelope recipients (To, Cc
          or Bcc); ``"Ada <ada@example.com>"`` and ``"ADA@example.com"`` both work.
        - ``from_``: the ``From`` address or the envelope sender.
        - ``subject``: equal to the decoded subject, or a pattern found in it.
        - ``text`` / ``html``: a substring of (or pattern found in) the decoded body.
        - ``headers``: ``{"X-Tag": "welcome"}``: each header has an equal value (or a
          value matching the pattern).
        - ``message_id``: with or without angle brackets.
        - ``attachment``: an attachment with this file name exists.
        - ``where``: any predicate on the :class:`SentMessage`.
        """
        criteria: dict[str, Any] = {
            "to": to,
            "from_": from_,
            "subject": subject,
            "text": text,
            "html": html,
            "headers": headers,
            "message_id": message_id,
            "attachment": attachment,
            "where": where,
        }
        return [m for m in self._messages if m.matches(**criteria)]

    def assert_sent(self, *, count: int | None = None, **criteria: Any) -> SentMessage:
        """Assert that a message matching ``criteria`` (see :meth:`find`) was sent; return it.

        With ``count``, exactly that many must match; the first match is returned.
        The failure message lists what was sent.
        """
        if count is not None and count < 1:
            raise ConfigurationError(
                "count must be at least 1; use assert_not_sent()", option="count"
            )
        found = self.find(**criteria)
        if found and (count is None or len(found) == count):
            return found[0]
        expected = "at least one message" if count is None else f"{count} message(s)"
        raise AssertionError(
            f"expected {expected} matching {_describe(criteria)}, found {len(found)}\n"
            + self._summary()
        )

    def assert_not_sent(self, **criteria: Any) -> None:
        """Assert that no message matching ``criteria`` (see :meth:`find`) was sent."""
        found = self.find(**criteria)
        if found:
            raise AssertionError(
                f"expected no message matching {_describe(criteria)}, found {len(found)}\n"
                + self._summary()
            )

    def assert_no_mail(self) -> None:
        """Assert that nothing was sent."""
        if self._messages:
            raise AssertionError(
                f"expected no mail, {len(self._messages)} sent\n" + self._summary()
            )

    def _summary(self) -> str:
        if not self._messages:
            return "outbox: empty"
        lines = [f"outbox: {len(self._messages)} message(s)"]
        for m in self._messages[:20]:
            lines.append(
                f"  [{m.index}] from {m.envelope.from_} to {', '.join(m.recipients)}: {m.subject!r}"
            )
        if len(self._messages) > 20:
            lines.append(f"  ... and {len(self._messages) - 20} more")
        return "\n".join(lines)

    # ------------------------------------------------------------ transport

    async def _deliver(self, composed: ComposedMessage, message: Message | None) -> Delivery:
        self.attempts += 1
        if self._failures_next:
            raise _copy_error(self._failures_next.pop(0))
        sent = SentMessage(composed, message, len(self._messages))
        self._messages.append(sent)
        return Delivery(
            response=f"stored in memory as #{sent.index}", message_id=composed.message_id
        )


def _copy_error(error: Exception) -> Exception:
    """A fresh copy of ``error``: each attempt gets its own ``attempts`` and ``message_id``."""
    clone = type(error).__new__(type(error), *error.args)
    clone.__dict__.update(vars(error))
    return clone


def _describe(criteria: Mapping[str, Any]) -> str:
    given = {k: v for k, v in criteria.items() if v is not None}
    return ", ".join(f"{k}={v!r}" for k, v in given.items()) or "(anything)"
