"""``asyncmailer demo --feedback``: the bounce loop closed on loopback, no AWS account."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from asyncmailer._cli._demo_feedback import BOUNCE, format_feedback_demo, run_feedback_demo
from asyncmailer.feedback import BounceEvent, SuppressedRecipientError, parse_ses_event


def subprocess_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "AWS_"))}
    env["HOME"] = str(home)
    return env


async def test_the_loop_closes() -> None:
    demo = await run_feedback_demo()
    # 1. one send, accepted by the endpoint
    assert demo.first.envelope.to == (BOUNCE,)
    # 2. the Bounce the endpoint published, signed, delivered to the webhook
    assert demo.published.kind == "Bounce"
    assert demo.published.sns_status == "delivered"
    assert demo.published.envelope is not None
    assert isinstance(parse_ses_event(demo.published.envelope), BounceEvent)
    # ...and verified and parsed by the webhook, for that very message
    assert isinstance(demo.event, BounceEvent)
    assert demo.event.message_id == demo.first.response
    assert demo.event.bounce_type == "Permanent"
    # 3. suppressed
    assert demo.suppressed[:2] == (BOUNCE, "BOUNCE")
    # 4. the next send refused before any request: still one message at the endpoint
    assert isinstance(demo.refusal, SuppressedRecipientError)
    assert list(demo.refusal.suppressed) == [BOUNCE]
    assert demo.messages_accepted == 1
    report = format_feedback_demo(demo)
    assert "BounceEvent  Permanent/General" in report
    assert "(the id of send 1)" in report
    assert "SuppressedRecipientError" in report


async def test_the_loop_closes_over_v1() -> None:
    demo = await run_feedback_demo(api="v1")
    assert demo.event.message_id == demo.first.response
    assert demo.messages_accepted == 1


def test_the_command_needs_no_aws_account(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "asyncmailer", "demo", "--feedback"],
        capture_output=True,
        text=True,
        env=subprocess_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "SignatureVersion 1 (SHA1withRSA)" in proc.stdout
    assert f"recipient    {BOUNCE}  5.1.1" in proc.stdout
    assert f"SuppressedRecipientError: 1 recipient(s) on the suppression list: {BOUNCE}" in (
        proc.stdout
    )
    assert '"notificationType": "Bounce"' in proc.stdout
    assert proc.stderr == ""


WITHOUT_FEEDBACK_EXTRA = (
    "import runpy, sys\n"
    "sys.modules['cryptography'] = None\n"
    "runpy.run_module('asyncmailer', run_name='__main__')\n"
)


def test_without_the_extra_the_command_says_what_to_install(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_FEEDBACK_EXTRA, "demo", "--feedback"],
        capture_output=True,
        text=True,
        env=subprocess_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "needs the feedback extra" in proc.stderr
    assert "pip install 'asyncmailer[feedback]'" in proc.stderr
