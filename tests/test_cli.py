"""The ``asyncmailer`` command line, driven for real.

In-process through ``main([...])`` against the local SES endpoint (served from a thread)
or moto's server; as a subprocess (``python -m asyncmailer``) for the demo and for bulk
runs interrupted with SIGINT and SIGKILL, then resumed.
"""

from __future__ import annotations

import collections
import csv
import email.policy
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import boto3
import pytest

from asyncmailer import errors
from asyncmailer._cli._bulk import BulkSummary, classify
from asyncmailer._cli._demo import png_image
from asyncmailer._cli._output import HINTS, hint_for
from asyncmailer._cli._results import FIELDS, load_results
from asyncmailer.cli import main, run_demo
from asyncmailer.testing import SESEndpoint

ROOT = Path(__file__).resolve().parent.parent
SENDER = "Shop <shop@example.com>"


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def endpoint() -> Iterator[SESEndpoint]:
    """The local SES endpoint, served from a thread so ``main()`` can run its own loop."""
    with SESEndpoint(seed=7).run_in_thread() as served:
        yield served


def ses(endpoint: SESEndpoint) -> list[str]:
    return ["--endpoint-url", endpoint.url, "--region", "us-east-1"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def destinations(endpoint: SESEndpoint) -> collections.Counter[str]:
    return collections.Counter(d for m in endpoint.messages() for d in m.destinations)


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def results_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(extra)
    return env


# -------------------------------------------------------------------------------- demo


async def test_run_demo_sends_a_rich_message_through_ses(tmp_path: Path) -> None:
    demo = await run_demo(tmp_path)
    assert demo.eml_path.parent == tmp_path
    assert demo.eml_path.read_bytes()
    stored = parse(demo.eml_path.read_bytes())
    assert stored.get_content_type() == "multipart/mixed"
    types = [part.get_content_type() for part in stored.walk()]
    for expected in ("text/plain", "text/html", "image/png", "text/calendar"):
        assert expected in types
    image = next(p for p in stored.walk() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<logo@asyncmailer>"
    assert 'src="cid:logo@asyncmailer"' in str(
        next(p for p in stored.walk() if p.get_content_type() == "text/html").get_content()
    )
    calendar = next(p for p in stored.walk() if p.get_content_type() == "text/calendar")
    assert calendar.get_param("method") == "REQUEST"
    filenames = {p.get_filename() for p in stored.walk()} - {None}
    assert filenames == {"logo.png", "order-summary.csv", "invite.ics"}
    # SES's message id, formatted as recipients see it, and the file named after it.
    assert demo.result.transport == "ses"
    assert demo.result.message_id == f"<{demo.result.response}@email.amazonses.com>"
    assert demo.eml_path.name == f"{demo.result.response}.eml"
    assert demo.tree.splitlines()[0] == "multipart/mixed"
    assert "image/png  (inline, logo.png, cid:logo@asyncmailer" in demo.tree


def test_png_image_is_a_valid_png() -> None:
    data = png_image(5, 3)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    offset, chunks = 8, {}
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = body
        offset += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, color) == (5, 3, 8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert list(chunks)[-1] == b"IEND"


# ``python -m asyncmailer`` as after ``pip install .``: without the cli extra's packages.
WITHOUT_EXTRAS = (
    "import runpy, sys\n"
    "for name in ('jinja2', 'rich', 'aiosmtplib', 'redis', 'dkim'):\n"
    "    sys.modules[name] = None\n"
    "runpy.run_module('asyncmailer', run_name='__main__')\n"
)


def test_demo_subprocess_needs_no_aws_account_and_no_extras(tmp_path: Path) -> None:
    """What the README's first command does, with no AWS variables and an empty HOME."""
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("AWS_")}
    env["HOME"] = str(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [eml] = out.glob("*.eml")
    assert f"Stored message: {eml}" in proc.stdout
    assert "message_id   <" in proc.stdout
    assert "├── multipart/alternative" in proc.stdout
    assert "text/calendar  (method=REQUEST" in proc.stdout
    assert proc.stderr == ""


# -------------------------------------------------------------------------------- send


def test_send_from_flags(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    attachment = tmp_path / "report.txt"
    attachment.write_text("numbers\n")
    html = tmp_path / "body.html"
    html.write_text("<p>Hi <b>Ada</b></p>")
    code, out, err = run(
        capsys,
        "send",
        "--from",
        SENDER,
        "--to",
        "ada@example.org",
        "--to",
        "bob@example.org",
        "--subject",
        "Hello",
        "--text",
        "Hi Ada",
        "--html",
        f"@{html}",
        "--attach",
        str(attachment),
        "--header",
        "X-Campaign: spring",
        "--api",
        "v1",
        *ses(endpoint),
    )
    assert (code, err) == (0, "")
    [record] = endpoint.messages()
    assert record.api == "v1"
    assert record.destinations == ("ada@example.org", "bob@example.org")
    message = record.email_message()
    assert message["Subject"] == "Hello"
    assert message["X-Campaign"] == "spring"
    assert "<b>Ada</b>" in message.as_string()
    assert [p.get_filename() for p in message.iter_attachments()] == ["report.txt"]
    assert f"response    {record.message_id}" in out
    assert "sent via ses" in out


def test_send_an_eml_file_with_an_envelope_override(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    eml = tmp_path / "message.eml"
    eml.write_bytes(
        b"From: shop@example.com\r\nTo: ada@example.org\r\nSubject: Prebuilt\r\n\r\nBody\r\n"
    )
    code, _, err = run(
        capsys, "send", "--eml", str(eml), "--to", "carol@example.org", *ses(endpoint)
    )
    assert (code, err) == (0, "")
    [record] = endpoint.messages()
    assert record.api == "v2"
    assert record.destinations == ("carol@example.org",)
    assert record.email_message()["To"] == "ada@example.org"
    assert record.raw.endswith(b"Body\r\n")


def test_send_through_the_file_transport(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    code, out, _ = run(
        capsys,
        *("send", "--transport", "file", "--dir", str(outbox)),
        *("--from", SENDER, "--to", "ada@example.org", "--subject", "Filed", "--text", "x"),
    )
    assert code == 0
    [path] = outbox.glob("*.eml")
    assert parse(path.read_bytes())["Subject"] == "Filed"
    assert "sent via file" in out


def test_send_through_smtp(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("asyncmailer.transports.smtp")
    from aiosmtpd.controller import Controller

    received: list[tuple[str, list[str], bytes]] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
            return "250 OK"

    with socket.socket() as probe:  # aiosmtpd's Controller cannot bind port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        code, out, err = run(
            capsys,
            *("send", "--transport", "smtp", "--host", "127.0.0.1", "--port", str(port)),
            *("--from", SENDER, "--to", "ada@example.org", "--subject", "Hi", "--text", "x"),
        )
    finally:
        controller.stop()
    assert code == 0, err
    [(mail_from, rcpt, content)] = received
    assert (mail_from, rcpt) == ("shop@example.com", ["ada@example.org"])
    assert b"Subject: Hi" in content
    assert "sent via smtp" in out


def test_a_refused_send_is_one_line_and_a_hint(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.configure(verified_identities={"example.com"})
    code, out, err = run(
        capsys,
        *("send", "--from", "eve@other.example", "--to", "ada@example.org", "--text", "x"),
        *ses(endpoint),
    )
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: SES refused: identity eve@other.example is not verified")
    assert lines[1] == f"hint: {HINTS[errors.IdentityNotVerifiedError]}"
    assert "Traceback" not in err
    assert endpoint.messages() == []


FLAGS = ["send", "--from", "a@x.com", "--to", "b@x.org", "--text", "x"]
TO_FILES = ["--transport", "file", "--dir", "."]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["send", "--to", "a@example.org", "--text", "x"], "needs --from"),
        (["send", "--from", "a@example.com", "--to", "b@example.org"], "needs a body"),
        ([*FLAGS, "--transport", "smtp"], "needs --host"),
        ([*FLAGS, "--transport", "file"], "needs --dir"),
        ([*FLAGS[:-1], "@/nonexistent/t"], "cannot read /nonexistent/t"),
        ([*FLAGS, "--header", "bad"], "expected 'Name: value'"),
        (["send", "--from", "no address", *FLAGS[3:], *TO_FILES], "hint: fix the address"),
        ([*FLAGS, "--attach", "/nonexistent/f.pdf", *TO_FILES], "hint: check that the file"),
        (["send", "--sending-rate", "fast"], "expected a number or 'auto'"),
        ([], "usage: asyncmailer"),
    ],
)
def test_usage_errors_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    needle: str,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing was written by the file transport


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("asyncmailer ")


def test_every_error_class_has_a_hint_and_a_troubleshooting_row() -> None:
    guide = (ROOT / "docs" / "ses-guide.md").read_text(encoding="utf-8")
    for name in errors.__all__:
        cls = getattr(errors, name)
        if not isinstance(cls, type) or not issubclass(cls, errors.MailError):
            continue
        assert f"`{name}`" in guide, f"docs/ses-guide.md does not explain {name}"
        abstract = (errors.MailError, errors.UsageError, errors.MessageError)
        if cls not in (*abstract, errors.DeliveryError, errors.ThrottlingError):
            assert cls in HINTS, f"no CLI hint for {name}"
    assert hint_for(errors.SendingRateExceededError("x")) == HINTS[errors.SendingRateExceededError]
    assert hint_for(errors.ThrottlingError("x")) is None


# ------------------------------------------------------------------------ verify/quota


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_verify_passes_on_a_ready_account(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], api: str
) -> None:
    endpoint.configure(verified_identities={"example.com"}, max_send_rate=30)
    code, out, _ = run(capsys, "verify", "--api", api, "--from", SENDER, *ses(endpoint))
    assert code == 0, out
    lines = out.splitlines()
    for name in ("credentials", "sending", "production", "quota", "identity", "dkim"):
        assert any(line.startswith(f"PASS  {name}") for line in lines), (name, out)
    assert "shop@example.com may send through the identity example.com" in out
    assert "30 recipients/s" in out
    assert out.rstrip().endswith("Ready to send.")
    requests = endpoint.stats().requests
    if api == "v2":  # one call answers credentials, sending, sandbox and quota
        assert requests.get("sesv2:GetAccount") == 1
        assert not any(name.startswith("ses:") for name in requests)
    else:
        assert requests.get("ses:GetSendQuota") == 1
        assert not any(name.startswith("sesv2:") for name in requests)


def test_verify_reports_each_problem_with_its_fix(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.configure(
        verified_identities={"shop@example.com"},
        sandbox=True,
        sending_enabled=False,
        max_24_hour_send=200,
        configuration_sets={"transactional"},
    )
    code, out, _ = run(
        capsys, "verify", "--from", "ada@other.example", "--configuration-set", "x", *ses(endpoint)
    )
    assert code == 1
    status = {line[6:18].strip(): line[:4] for line in out.splitlines() if line[:4].isupper()}
    assert status == {
        "credentials": "PASS",
        "sending": "FAIL",
        "production": "WARN",
        "quota": "PASS",
        "identity": "FAIL",
        "dkim": "WARN",
        "config-set": "SKIP",  # the local endpoint does not implement GetConfigurationSet
    }
    assert "no SES identity covers ada@other.example" in out
    assert "fix: verify the domain: aws sesv2 create-email-identity" in out
    assert "fix: aws sesv2 put-account-sending-attributes --sending-enabled" in out
    assert "in the SES sandbox" in out
    assert "2 check(s) failed, 2 warning(s)." in out


def test_verify_strict_fails_on_warnings(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.configure(sandbox=True)
    assert run(capsys, "verify", "--from", SENDER, *ses(endpoint))[0] == 0
    code, out, _ = run(capsys, "verify", "--strict", "--from", SENDER, *ses(endpoint))
    assert code == 1
    assert "WARN  production" in out


def test_verify_v1_against_moto(moto_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    client = boto3.client("ses", endpoint_url=moto_url, region_name="eu-west-1")
    argv = ["verify", "--api", "v1", "--endpoint-url", moto_url, "--region", "eu-west-1"]
    code, out, _ = run(capsys, *argv, "--from", "news@mail.example.com")
    assert code == 1
    assert "FAIL  identity     no SES identity covers news@mail.example.com" in out
    assert "(looked for news@mail.example.com, mail.example.com, example.com)" in out

    client.verify_domain_identity(Domain="example.com")
    client.create_configuration_set(ConfigurationSet={"Name": "transactional"})
    code, out, _ = run(
        capsys, *argv, "--from", "news@mail.example.com", "--configuration-set", "transactional"
    )
    assert code == 0, out
    assert "PASS  credentials  SES answers in eu-west-1 (API v1)" in out
    assert (
        "PASS  identity     news@mail.example.com may send through the identity example.com" in out
    )
    assert "PASS  dkim" in out
    # moto reports the sandbox quota (200 a day), and does not implement this call.
    assert (
        "WARN  production   the account is in the SES sandbox (inferred: Max24HourSend is 200)"
        in out
    )
    assert "SKIP  sending" in out
    assert "PASS  config-set" in out

    code, out, _ = run(capsys, *argv, "--from", SENDER, "--configuration-set", "nope")
    assert code == 1
    assert "FAIL  config-set   configuration set nope does not exist" in out


def test_verify_reports_unreachable_ses(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "verify",
        "--from",
        SENDER,
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--region",
        "us-east-1",
    )
    assert code == 1
    assert out.splitlines()[1].startswith("FAIL  credentials  could not connect to SES")
    assert "fix: check --region and --endpoint-url" in out
    assert "SKIP  others" in out
    assert "Traceback" not in err


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_quota(endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], api: str) -> None:
    endpoint.configure(max_send_rate=14, max_24_hour_send=50000)
    code, out, _ = run(capsys, "quota", "--api", api, *ses(endpoint))
    assert code == 0
    assert out.splitlines() == [
        "MaxSendRate      14 recipients/s",
        "Max24HourSend    50000",
        "SentLast24Hours  0",
    ]
    code, out, _ = run(capsys, "quota", "--json", "--api", api, *ses(endpoint))
    assert json.loads(out) == {
        "MaxSendRate": 14.0,
        "Max24HourSend": 50000.0,
        "SentLast24Hours": 0.0,
    }


def test_quota_against_moto(moto_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "quota", "--api", "v1", "--endpoint-url", moto_url, "--region", "us-east-1"
    )
    assert code == 0
    assert "Max24HourSend    200" in out


# -------------------------------------------------------------------------------- bulk


@pytest.fixture
def bulk_files(tmp_path: Path) -> dict[str, Path]:
    rows = [{"id": f"c{i}", "email": f"user{i}@example.org", "name": f"User {i}"} for i in range(6)]
    (tmp_path / "body.txt.j2").write_text("Hello {{ name }}, your id is {{ id }}.\n")
    (tmp_path / "body.html.j2").write_text("<p>Hello {{ name }}</p>{% include 'footer.html' %}")
    (tmp_path / "footer.html").write_text("<footer>{{ row.email }}</footer>")
    return {
        "csv": write_csv(tmp_path / "recipients.csv", rows),
        "results": tmp_path / "results.csv",
        "text": tmp_path / "body.txt.j2",
        "html": tmp_path / "body.html.j2",
    }


def bulk_argv(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "bulk",
        *("--csv", str(files["csv"]), "--results", str(files["results"])),
        *("--text-template", str(files["text"]), "--html-template", str(files["html"])),
        *("--subject-template", "Hi {{ name }}", "--from", SENDER, "--no-progress"),
        *extra,
    ]


def test_bulk_sends_each_row_once_and_resumes_without_resending(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path]
) -> None:
    endpoint.configure(max_send_rate=50)
    code, out, _ = run(capsys, *bulk_argv(bulk_files, *ses(endpoint)))
    assert code == 0
    assert out.startswith("sent 6;")
    assert destinations(endpoint) == {f"user{i}@example.org": 1 for i in range(6)}
    message = endpoint.messages()[0].email_message()
    assert message["Subject"] == "Hi User 0"
    assert message.get_body(("plain",)).get_content() == "Hello User 0, your id is c0.\r\n"  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert html.startswith("<p>Hello User 0</p><footer>user0@example.org</footer>")
    rows = results_rows(bulk_files["results"])
    assert rows[0] == list(FIELDS)
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [
        (f"c{i}", f"user{i}@example.org", "sent") for i in range(6)
    ]  # compacted: one line per row, CSV order
    assert {r[3] for r in rows[1:]} == {
        f"<{m.message_id}@email.amazonses.com>" for m in endpoint.messages()
    }
    # The rate came from the account: sending_rate auto reads the quota.
    assert endpoint.stats().requests.get("sesv2:GetAccount") == 1

    code, out, _ = run(capsys, *bulk_argv(bulk_files, *ses(endpoint)))
    assert code == 0
    assert out.startswith("sent 0, 6 already sent before;")
    assert sum(destinations(endpoint).values()) == 6


def test_bulk_html_is_autoescaped_and_templates_are_sandboxed(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv_path = write_csv(
        tmp_path / "r.csv",
        [
            {"email": "a@example.org", "name": "<script>alert(1)</script>"},
            {"email": "b@example.org", "name": "{{ 7 * 7 }}"},
        ],
    )
    (tmp_path / "body.html").write_text("<p>{{ name }}</p>")
    (tmp_path / "evil.txt").write_text("{{ row.__class__.__mro__ }}")
    results = tmp_path / "results.csv"
    base = ["bulk", "--csv", str(csv_path), "--from", SENDER, "--no-progress", *ses(endpoint)]
    code, _, _ = run(
        capsys, *base, "--template", str(tmp_path / "body.html"), "--results", str(results)
    )
    assert code == 0
    # Rows are sent concurrently: the order the endpoint received them in is not the CSV's.
    bodies = {
        m.destinations[0]: m.email_message().get_body(("html",)).get_content()  # type: ignore[union-attr]
        for m in endpoint.messages()
    }
    assert bodies["a@example.org"].startswith("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>")
    assert bodies["b@example.org"].startswith("<p>{{ 7 * 7 }}</p>")  # data, never a template
    endpoint.reset()
    evil_results = tmp_path / "evil.csv"
    code, out, _ = run(
        capsys, *base, "--template", str(tmp_path / "evil.txt"), "--results", str(evil_results)
    )
    assert code == 1
    assert out.startswith("sent 0, 2 failed;")
    assert all(r[2] == "failed" and "RenderError" in r[4] for r in results_rows(evil_results)[1:])
    assert endpoint.messages() == []


def test_bulk_undefined_variable_fails_the_row_only(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv_path = write_csv(
        tmp_path / "r.csv",
        [{"email": "a@example.org", "name": "Ada"}, {"email": "b@example.org", "name": ""}],
    )
    (tmp_path / "t.txt").write_text("Hi {{ name }} {{ missing }}")
    results = tmp_path / "results.csv"
    code, _out, _ = run(
        capsys,
        *("bulk", "--csv", str(csv_path), "--template", str(tmp_path / "t.txt")),
        *("--results", str(results), "--from", SENDER, "--no-progress", *ses(endpoint)),
    )
    assert code == 1
    rows = results_rows(results)[1:]
    assert [r[2] for r in rows] == ["failed", "failed"]
    assert "'missing' is undefined" in rows[0][4]


def test_bulk_final_failures_are_not_retried_unless_asked(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path]
) -> None:
    endpoint.configure(verified_identities={"other.example"}, max_send_rate=50)
    code, out, _ = run(capsys, *bulk_argv(bulk_files, *ses(endpoint)))
    assert code == 1
    assert out.startswith("sent 0, 6 failed;")
    rows = results_rows(bulk_files["results"])[1:]
    assert {r[2] for r in rows} == {"failed"}
    assert all(r[4].startswith("IdentityNotVerifiedError: ") for r in rows)
    assert all(r[3].endswith("@example.com>") for r in rows)  # the Message-ID we composed

    endpoint.configure(verified_identities=None)
    code, out, _ = run(capsys, *bulk_argv(bulk_files, *ses(endpoint)))
    assert code == 1
    assert "6 failed before (skipped; --retry-failed)" in out
    assert endpoint.messages() == []
    code, out, _ = run(capsys, *bulk_argv(bulk_files, "--retry-failed", *ses(endpoint)))
    assert code == 0
    assert sum(destinations(endpoint).values()) == 6


def test_bulk_retry_safe_failures_are_resent_on_the_next_run(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path]
) -> None:
    endpoint.configure(server_error_ratio=1.0, max_send_rate=50)
    code, out, _ = run(capsys, *bulk_argv(bulk_files, "--max-attempts", "1", *ses(endpoint)))
    assert code == 1
    assert out.startswith("sent 0, 6 not sent (safe to retry);")
    assert {r[2] for r in results_rows(bulk_files["results"])[1:]} == {"not_sent"}
    endpoint.configure(server_error_ratio=0.0)
    code, out, _ = run(capsys, *bulk_argv(bulk_files, *ses(endpoint)))
    assert code == 0
    assert out.startswith("sent 6;")
    assert destinations(endpoint) == {f"user{i}@example.org": 1 for i in range(6)}


def test_bulk_rows_left_sending_by_a_crash_become_unknown_and_are_not_resent(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path]
) -> None:
    endpoint.configure(max_send_rate=50)
    # What a SIGKILL leaves: c0 sent, c1 handed to SES with no outcome, c2 cut mid-line.
    bulk_files["results"].write_text(
        ",".join(FIELDS) + "\n"
        "c0,user0@example.org,sending,<a@example.com>,,t\n"
        "c1,user1@example.org,sending,<b@example.com>,,t\n"
        "c0,user0@example.org,sent,<x@email.amazonses.com>,,t\n"
        "c2,user2@exa"
    )
    code, out, _ = run(capsys, *bulk_argv(bulk_files, *ses(endpoint)))
    assert code == 1
    assert "1 already sent before" in out
    assert "1 unknown before (skipped; --retry-unknown)" in out
    assert "1 left mid-send by an earlier run (recorded as unknown)" in out
    assert set(destinations(endpoint)) == {f"user{i}@example.org" for i in range(2, 6)}
    records = load_results(bulk_files["results"])
    assert records["c1"].status == "unknown"
    assert records["c1"].message_id == "<b@example.com>"
    assert "may have been sent" in records["c1"].error
    assert [r.status for r in records.values()].count("sent") == 5

    code, out, _ = run(capsys, *bulk_argv(bulk_files, "--retry-unknown", *ses(endpoint)))
    assert code == 0
    assert destinations(endpoint)["user1@example.org"] == 1


def test_bulk_refuses_a_changed_csv_or_a_foreign_results_file(
    capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path], tmp_path: Path
) -> None:
    outbox = ["--transport", "file", "--dir", str(tmp_path / "outbox")]
    assert run(capsys, *bulk_argv(bulk_files, *outbox))[0] == 0
    write_csv(bulk_files["csv"], [{"id": "c0", "email": "someone@else.org", "name": "X"}])
    code, _, err = run(capsys, *bulk_argv(bulk_files, *outbox))
    assert code == 2
    assert "error: row c0 was user0@example.org" in err
    assert "hint: use a new --results file" in err

    bulk_files["results"].write_text("a,b\n1,2\n")
    code, _, err = run(capsys, *bulk_argv(bulk_files, *outbox))
    assert code == 2
    assert "is not an asyncmailer results file" in err


@pytest.mark.parametrize(
    ("rows", "extra", "needle"),
    [
        ([{"mail": "a@x.org"}], [], "has no 'email' column"),
        ([{"id": "1", "email": "a@x.org"}, {"id": "1", "email": "b@x.org"}], [], "appears twice"),
        ([{"email": "a@x.org"}], ["--id-column", "key"], "no 'key' column"),
    ],
)
def test_bulk_csv_problems_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
    bulk_files: dict[str, Path],
    tmp_path: Path,
    rows: list[dict[str, str]],
    extra: list[str],
    needle: str,
) -> None:
    write_csv(bulk_files["csv"], rows)
    code, _, err = run(
        capsys, *bulk_argv(bulk_files, "--transport", "file", "--dir", str(tmp_path), *extra)
    )
    assert code == 2
    assert needle in err
    assert not list(tmp_path.glob("*.eml"))


def test_bulk_template_syntax_error_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path]
) -> None:
    bulk_files["text"].write_text("Hello {{ name ")
    code, _, err = run(capsys, *bulk_argv(bulk_files, "--transport", "file", "--dir", "x"))
    assert code == 2
    assert f"error: template {bulk_files['text']}, line 1:" in err


def test_bulk_without_jinja2_says_what_to_install(
    capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)
    code, _, err = run(capsys, *bulk_argv(bulk_files, "--transport", "file", "--dir", "x"))
    assert code == 2
    assert "error: this command needs jinja2, which is not installed" in err
    assert "hint: pip install 'asyncmailer[cli]'" in err


# The cell of the "Hardening" issue: one row fanned out to four people who saw each other.
FAN_OUT = "victim1@x.com, victim2@y.com, Team: v3@z.com, v4@z.com;"


def test_bulk_a_recipient_cell_must_hold_exactly_one_mailbox(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cells = {
        "ok": "Ada <ada@example.org>",
        "fan-out": FAN_OUT,
        "list": "a@x.com, b@y.com",
        "semicolons": "a@x.com; b@y.com",
        "group": "Team: v3@z.com;",
        "empty-group": "undisclosed-recipients:;",
        "quoted-comma": '"Doe, John" <john@example.org>',  # one mailbox: a comma in a name
        "blank": "  ",
    }
    csv_path = write_csv(
        tmp_path / "r.csv", [{"id": k, "email": v, "name": "N"} for k, v in cells.items()]
    )
    (tmp_path / "t.txt").write_text("Hi {{ name }}")
    results = tmp_path / "results.csv"
    argv = [
        *("bulk", "--csv", str(csv_path), "--template", str(tmp_path / "t.txt")),
        *("--results", str(results), "--from", SENDER, "--no-progress", *ses(endpoint)),
    ]
    code, out, _ = run(capsys, *argv)
    assert code == 1
    assert out.startswith("sent 2, 6 failed;")
    assert destinations(endpoint) == {"ada@example.org": 1, "john@example.org": 1}
    assert [m.email_message()["To"] for m in endpoint.messages()] == [
        "Ada <ada@example.org>",
        '"Doe, John" <john@example.org>',
    ]
    recorded = {r[0]: r for r in results_rows(results)[1:]}
    assert {k: r[2] for k, r in recorded.items()} == {
        k: "sent" if k in ("ok", "quoted-comma") else "failed" for k in cells
    }
    for key in cells.keys() - {"ok", "quoted-comma"}:
        assert recorded[key][1] == cells[key].strip()  # the cell as given
        assert recorded[key][4].startswith("AddressError: the 'email' column ")
        assert recorded[key][3] == ""  # no Message-ID: nothing was composed
    # Resuming does not send them either, --retry-failed refuses them again.
    code, out, _ = run(capsys, *argv, "--retry-failed")
    assert code == 1
    assert out.startswith("sent 0, 6 failed, 2 already sent before;")
    assert sum(destinations(endpoint).values()) == 2


def test_bulk_compaction_never_writes_through_a_planted_tmp_symlink(
    capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path], tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    results = bulk_files["results"]
    planted = [
        results.with_name(results.name + ".tmp"),  # the old fixed name
        results.with_name(f".{results.name}.tmp"),
    ]
    for link in planted:
        link.symlink_to(victim)
    outbox = ["--transport", "file", "--dir", str(tmp_path / "outbox")]
    code, _, _ = run(capsys, *bulk_argv(bulk_files, *outbox))
    assert code == 0
    assert victim.read_text() == "precious\n"
    assert all(link.is_symlink() and link.resolve() == victim for link in planted)
    assert not results.is_symlink()
    assert [r[2] for r in results_rows(results)[1:]] == ["sent"] * 6  # compacted
    # No temporary file is left behind.
    assert sorted(p.name for p in tmp_path.glob(f"*{results.name}*")) == sorted(
        [results.name, *(link.name for link in planted)]
    )


@pytest.mark.parametrize("kind", ["symlink", "dangling-symlink", "directory"])
def test_bulk_results_must_be_a_regular_file_not_a_link(
    capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    victim = tmp_path / "victim.csv"
    results = bulk_files["results"]
    if kind == "symlink":
        victim.write_text("precious\n")
        results.symlink_to(victim)
    elif kind == "dangling-symlink":
        results.symlink_to(victim)
    else:
        results.mkdir()
    outbox = tmp_path / "outbox"
    code, _, err = run(capsys, *bulk_argv(bulk_files, "--transport", "file", "--dir", str(outbox)))
    assert code == 2
    if kind == "directory":
        assert f"error: {results} is not a regular file" in err
    else:
        assert f"error: {results} is a symbolic link" in err
        assert "hint: pass the real path with --results" in err
        assert results.is_symlink()
    if kind == "symlink":
        assert victim.read_text() == "precious\n"
    else:
        assert not victim.exists()
    assert not list(outbox.glob("*.eml"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_bulk_results_fifo_is_refused_without_blocking(
    capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path], tmp_path: Path
) -> None:
    os.mkfifo(bulk_files["results"])
    code, _, err = run(capsys, *bulk_argv(bulk_files, "--transport", "file", "--dir", "x"))
    assert code == 2
    assert f"error: {bulk_files['results']} is not a regular file" in err


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_bulk_results_file_is_private_and_compaction_keeps_its_mode(
    capsys: pytest.CaptureFixture[str], bulk_files: dict[str, Path], tmp_path: Path
) -> None:
    outbox = ["--transport", "file", "--dir", str(tmp_path / "outbox")]
    results = bulk_files["results"]
    assert run(capsys, *bulk_argv(bulk_files, *outbox))[0] == 0
    assert results.stat().st_mode & 0o777 == 0o600  # it lists recipients
    results.chmod(0o640)
    assert run(capsys, *bulk_argv(bulk_files, *outbox))[0] == 0
    assert results.stat().st_mode & 0o777 == 0o640


def test_classify_maps_outcomes_to_row_statuses() -> None:
    assert classify(errors.SendingRateExceededError("x"))[0] == "not_sent"
    assert classify(errors.SendAbortedError("x"))[0] == "not_sent"
    assert classify(errors.TransportStateError("x", state="closing"))[0] == "not_sent"
    assert classify(errors.DeliveryUnknownError("x"))[0] == "unknown"
    assert classify(errors.DeliveryTimeoutError("x"))[0] == "unknown"
    assert classify(errors.MessageRejectedError("x"))[0] == "failed"
    assert classify(errors.AddressError("x"))[0] == "failed"
    assert BulkSummary(failed=0).complete


# ------------------------------------------------ bulk as a subprocess, interrupted


def start_bulk(files: dict[str, Path], endpoint: SESEndpoint, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "asyncmailer", *bulk_argv(files, *ses(endpoint), *extra)]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env()
    )


def wait_for_messages(endpoint: SESEndpoint, proc: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 30
    while endpoint.stats().messages_accepted < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the bulk run did not start sending"
        time.sleep(0.02)


@pytest.fixture
def many_rows(bulk_files: dict[str, Path]) -> dict[str, Path]:
    rows = [{"id": f"r{i}", "email": f"user{i}@example.org", "name": f"U{i}"} for i in range(40)]
    write_csv(bulk_files["csv"], rows)
    return bulk_files


@pytest.mark.slow
def test_bulk_sigint_finishes_in_flight_rows_then_resumes(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], many_rows: dict[str, Path]
) -> None:
    endpoint.configure(latency=0.3)
    proc = start_bulk(many_rows, endpoint, "--sending-rate", "20")
    wait_for_messages(endpoint, proc, 6)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "stopping: finishing the messages in flight" in err
    assert "Traceback" not in err
    records = load_results(many_rows["results"])
    # Every row handed to SES got its answer: nothing is left unknown.
    assert {r.status for r in records.values()} == {"sent"}
    sent_first = len(records)
    assert 6 <= sent_first < 40
    assert out.startswith(f"sent {sent_first};")
    assert sum(destinations(endpoint).values()) == sent_first

    endpoint.configure(latency=0.0)
    code, out, _ = run(capsys, *bulk_argv(many_rows, "--sending-rate", "200", *ses(endpoint)))
    assert code == 0
    assert out.startswith(f"sent {40 - sent_first}, {sent_first} already sent before;")
    assert destinations(endpoint) == {f"user{i}@example.org": 1 for i in range(40)}


@pytest.mark.slow
def test_bulk_sigkill_never_leads_to_a_duplicate(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], many_rows: dict[str, Path]
) -> None:
    # SES accepts a message when the request arrives; the answer is what is delayed. So
    # when the process dies, some messages are accepted but not recorded as sent.
    endpoint.configure(latency=0.5)
    proc = start_bulk(many_rows, endpoint, "--sending-rate", "20")
    wait_for_messages(endpoint, proc, 8)
    proc.kill()
    proc.communicate(timeout=30)
    accepted_then = destinations(endpoint)
    before = load_results(many_rows["results"])
    in_doubt = {r.email for r in before.values() if r.status == "sending"}
    assert in_doubt & set(accepted_then), "no accepted message was left unrecorded"

    endpoint.configure(latency=0.0)
    code, _out, _ = run(capsys, *bulk_argv(many_rows, "--sending-rate", "200", *ses(endpoint)))
    assert code == 1  # rows in doubt are left for the user to decide
    after = load_results(many_rows["results"])
    assert len(after) == 40
    counts = destinations(endpoint)
    assert max(counts.values()) == 1  # nothing was sent twice
    for record in after.values():
        if record.status == "sent":
            assert counts[record.email] == 1
        else:
            assert record.status == "unknown"
            assert record.email in in_doubt
    assert {r.email for r in after.values() if r.status == "unknown"} == in_doubt


@pytest.mark.slow
def test_bulk_second_sigint_aborts_and_records_each_row_truthfully(
    endpoint: SESEndpoint, capsys: pytest.CaptureFixture[str], many_rows: dict[str, Path]
) -> None:
    # Six rows handed over at once, one admitted every 0.2 s, each answered after 1 s: when
    # the second SIGINT comes, some are at SES (accepted, unanswered), some still waiting.
    endpoint.configure(latency=1.0)
    proc = start_bulk(many_rows, endpoint, "--sending-rate", "5", "--concurrency", "6")
    wait_for_messages(endpoint, proc, 2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "aborting the messages in flight" in err
    accepted = set(destinations(endpoint))
    records = load_results(many_rows["results"])
    statuses = {r.email: r.status for r in records.values()}
    assert {e for e, s in statuses.items() if s == "unknown"} == accepted
    assert set(statuses.values()) <= {"unknown", "not_sent"}
    not_sent = {e for e, s in statuses.items() if s == "not_sent"}

    endpoint.configure(latency=0.0)
    code, out, _ = run(capsys, *bulk_argv(many_rows, "--sending-rate", "200", *ses(endpoint)))
    assert code == 1
    assert f"{len(accepted)} unknown before (skipped; --retry-unknown)" in out
    counts = destinations(endpoint)
    assert max(counts.values()) == 1
    assert not_sent <= set(counts)  # nothing had gone out: sent by the resumed run
    assert len(counts) == 40


def test_configuration_error_hints_name_the_option() -> None:
    error = errors.ConfigurationError("bad", option="sending_rate")
    assert (
        hint_for(error) == "check 'sending_rate' (for the command line: --sending-rate, see --help)"
    )
    assert hint_for(errors.ConfigurationError("no AWS credentials", option="credentials")) is None
    assert hint_for(errors.ConfigurationError("bad")) == HINTS[errors.ConfigurationError]


def test_denied_quota_reads_are_told_apart_from_bad_credentials() -> None:
    from botocore.exceptions import ClientError

    from asyncmailer._cli._account import _CallFailed, _credentials_failure
    from asyncmailer.transports._ses_errors import map_ses_error

    def failure(code: str) -> _CallFailed:
        response: Any = {"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {}}
        error = map_ses_error(ClientError(response, "GetSendQuota"), action="ses:GetSendQuota")
        assert error is not None
        return _CallFailed(code, error)

    denied = _credentials_failure(failure("AccessDenied"), "eu-west-1")
    assert (denied.status, denied.fix) == (
        "WARN",
        "grant ses:GetSendQuota / ses:GetAccount (needed for --sending-rate auto)",
    )
    invalid = _credentials_failure(failure("InvalidClientTokenId"), "eu-west-1")
    assert invalid.status == "FAIL"
    assert invalid.fix is not None and "AWS_ACCESS_KEY_ID" in invalid.fix
