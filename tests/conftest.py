"""Shared fixtures: an isolated AWS environment, moto's SES server, timing helpers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import os
import threading
from collections.abc import Generator, Iterator
from typing import Any

import pytest

# Hypothesis profiles: "ci" (default) keeps the suite quick, "long" is the campaign.
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.register_profile(
        "long",
        max_examples=100_000,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    examples = os.environ.get("HYPOTHESIS_MAX_EXAMPLES")
    if examples:  # a campaign slice that finishes: the profile with another example count
        settings.register_profile(
            "env", parent=settings.get_profile(profile), max_examples=int(examples)
        )
        profile = "env"
    settings.load_profile(profile)
except ImportError:  # pragma: no cover
    pass

# A test still running after this many seconds prints the stack of every pending asyncio
# task (faulthandler, at 300 s, shows only threads: an idle event loop waiting on a lost
# wake-up looks like `select()` there). Printed through pytest's terminal writer, with output
# capture suspended, so a CI log shows it even if the run is then killed.
HANG_REPORT_AFTER = float(os.environ.get("ASYNCMAILER_TEST_HANG_REPORT", "240"))


def _report_pending_tasks(item: pytest.Item) -> None:
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    out = io.StringIO()
    out.write(f"\n=== {item.nodeid} still running after {HANG_REPORT_AFTER:g} s; ")
    out.write(f"{len(tasks)} pending asyncio task(s):\n")
    for task in tasks:
        out.write(f"--- {task!r}\n")
        task.print_stack(file=out)
    capture = item.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        item.config.get_terminal_writer().write(out.getvalue(), flush=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    timer = threading.Timer(HANG_REPORT_AFTER, _report_pending_tasks, args=(item,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture(autouse=True)
def _isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No test may reach real AWS or read the developer's credentials."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's real HTTP server on a free loopback port; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_url(moto_server: str) -> str:
    """moto's URL, with its state reset for this test."""
    import urllib.request

    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    return moto_server
