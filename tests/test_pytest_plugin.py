"""The pytest plugin, run the way users run it: on a sample test file, through pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SAMPLE = """
import pytest

from asyncmailer.errors import MessageRejectedError
from asyncmailer.transports.memory import MemoryTransport


async def signup(address, mailer):
    await mailer.send_mail(
        from_="shop@example.com", to=address, subject="Welcome", text="Please confirm."
    )


@pytest.mark.asyncio
async def test_welcome_mail(outbox):
    assert isinstance(outbox, MemoryTransport)
    await signup("ada@example.com", outbox)
    mail = outbox.assert_sent(to="ada@example.com", subject="Welcome")
    assert "confirm" in mail.text


@pytest.mark.asyncio
async def test_each_test_gets_an_empty_outbox(outbox):
    outbox.assert_no_mail()


@pytest.mark.asyncio
async def test_injected_failure(outbox):
    outbox.fail_next(MessageRejectedError("blocked"))
    with pytest.raises(MessageRejectedError):
        await signup("ada@example.com", outbox)
    outbox.assert_no_mail()


@pytest.mark.asyncio
async def test_failing_assertion_is_readable(outbox):
    await signup("ada@example.com", outbox)
    outbox.assert_sent(to="bob@example.com")
"""

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""


def test_outbox_fixture_in_a_user_project(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_sample=SAMPLE)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: expected at least one message matching to='bob@example.com', found 0",
            "*outbox: 1 message(s)*",
            "*from shop@example.com to ada@example.com: 'Welcome'*",
        ]
    )


def test_the_plugin_is_registered_by_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_listing="""
        def test_registered(request):
            assert request.config.pluginmanager.has_plugin("asyncmailer")
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--fixtures")
    result.stdout.fnmatch_lines(["outbox*", "*An open*MemoryTransport*closed after the test*"])
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_auto_mode_and_sync_helpers(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "asyncio_mode = auto\n")
    pytester.makepyfile(
        test_auto="""
        import asyncio

        async def test_async(outbox):
            await outbox.send_mail(from_="a@example.com", to="b@example.com", text="x")
            assert len(outbox) == 1

        def test_sync_code_can_read_the_outbox(outbox):
            outbox.assert_no_mail()
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
