"""pytest plugin for applications that send mail with asyncmailer (loaded automatically).

It provides the ``outbox`` fixture: an open :class:`~asyncmailer.transports.memory.MemoryTransport`
to hand to the code under test instead of your real transport, with assertion helpers::

    async def test_signup_sends_welcome(outbox):
        await signup("ada@example.com", mailer=outbox)
        mail = outbox.assert_sent(to="ada@example.com", subject="Welcome")
        assert "confirm" in mail.text

    async def test_no_mail_on_failure(outbox):
        outbox.fail_next(MessageRejectedError("rejected"))
        ...
        outbox.assert_no_mail()

The fixture is asynchronous and needs pytest-asyncio (``asyncio_mode = "auto"``, or mark
the tests with ``@pytest.mark.asyncio``); the assertion helpers are plain functions, so
synchronous tests may use them too. Without pytest-asyncio the fixture explains what is
missing. See ``docs/testing.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from asyncmailer.transports.memory import MemoryTransport

__all__ = ["outbox"]

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    HAVE_PYTEST_ASYNCIO = False
else:
    HAVE_PYTEST_ASYNCIO = True


if HAVE_PYTEST_ASYNCIO:

    @pytest_asyncio.fixture
    async def outbox() -> AsyncIterator[MemoryTransport]:
        """An open :class:`~asyncmailer.MemoryTransport`, closed after the test."""
        # Imported here: the plugin loads in every pytest run, the library only when used.
        from asyncmailer.transports.memory import MemoryTransport

        async with MemoryTransport() as transport:
            yield transport

else:  # pragma: no cover - exercised only without pytest-asyncio

    @pytest.fixture
    def outbox() -> Any:
        """Needs pytest-asyncio; explains so."""
        pytest.fail(
            "the asyncmailer 'outbox' fixture needs pytest-asyncio: pip install pytest-asyncio",
            pytrace=False,
        )
