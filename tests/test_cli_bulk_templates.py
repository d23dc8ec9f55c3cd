"""``asyncmailer bulk --ses-template`` / ``--ses-inline``: SES renders, SendBulkEmail sends.

In-process through ``main([...])`` against the local SES endpoint served from a thread
(moto has no SESv2 templates nor SendBulkEmail).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncmailer._cli._results import load_results
from asyncmailer.cli import main
from asyncmailer.testing import SESEndpoint
from tests.helpers import needs_sesv2

SENDER = "shop@example.com"


@pytest.fixture
def endpoint() -> Iterator[SESEndpoint]:
    with SESEndpoint(seed=7, max_send_rate=200).run_in_thread() as served:
        yield served


def write_rows(path: Path, n: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "email", "name"])
        writer.writeheader()
        for i in range(n):
            writer.writerow({"id": f"r{i}", "email": f"user{i}@example.org", "name": f"User {i}"})
    return path


def argv(endpoint: SESEndpoint, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "bulk",
        *("--csv", str(tmp_path / "rows.csv"), "--results", str(tmp_path / "results.csv")),
        *("--from", SENDER, "--no-progress"),
        *("--endpoint-url", endpoint.url, "--region", "us-east-1"),
        *extra,
    ]


def create_template(endpoint: SESEndpoint, name: str, subject: str, text: str) -> None:
    import boto3

    client = boto3.client(
        "sesv2",
        endpoint_url=endpoint.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_email_template(
        TemplateName=name, TemplateContent={"Subject": subject, "Text": text}
    )


def test_stored_template_one_row_per_destination_and_resume_never_resends(
    endpoint: SESEndpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_rows(tmp_path / "rows.csv", 120)
    create_template(endpoint, "news", "Hi {{name}}", "Hello {{name}} ({{id}})")
    assert main(argv(endpoint, tmp_path, "--ses-template", "news")) == 0
    assert capsys.readouterr().out.startswith("sent 120;")
    # 120 rows at 200/s: requests of at most 50 destinations.
    assert endpoint.stats().requests["sesv2:SendBulkEmail"] == 3
    records = endpoint.messages()
    assert sorted(r.destinations[0] for r in records) == sorted(
        f"user{i}@example.org" for i in range(120)
    )
    first = next(r for r in records if r.destinations == ("user7@example.org",))
    assert first.email_message()["Subject"] == "Hi User 7"
    results = load_results(tmp_path / "results.csv")
    assert len(results) == 120
    assert {r.status for r in results.values()} == {"sent"}
    assert {r.message_id for r in results.values()} == {
        f"<{r.message_id}@email.amazonses.com>" for r in records
    }
    # Run again: every row is known as sent, nothing is resent.
    assert main(argv(endpoint, tmp_path, "--ses-template", "news")) == 0
    assert capsys.readouterr().out.startswith("sent 0, 120 already sent before;")
    assert len(endpoint.messages()) == 120


@needs_sesv2("Template", "TemplateContent")
def test_inline_template_files_and_failed_rows_are_journaled(
    endpoint: SESEndpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_rows(tmp_path / "rows.csv", 3)
    with (tmp_path / "rows.csv").open("a", encoding="utf-8") as handle:
        handle.write("bad,not an address,Bad\n")
    (tmp_path / "body.txt").write_text("Dear {{name}}")
    code = main(
        argv(
            endpoint,
            tmp_path,
            "--ses-inline",
            "--subject-template",
            "For {{name}}",
            "--text-template",
            str(tmp_path / "body.txt"),
        )
    )
    assert code == 1
    results = load_results(tmp_path / "results.csv")
    assert results["bad"].status == "failed"
    assert [results[f"r{i}"].status for i in range(3)] == ["sent"] * 3
    record = endpoint.messages()[0]
    assert record.email_message()["Subject"] == "For User 0"
    assert record.action == "SendBulkEmail"


def test_missing_stored_template_is_not_sent_and_can_be_rerun(
    endpoint: SESEndpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_rows(tmp_path / "rows.csv", 2)
    assert main(argv(endpoint, tmp_path, "--ses-template", "missing")) == 1
    results = load_results(tmp_path / "results.csv")
    assert {r.status for r in results.values()} == {"not_sent"}
    create_template(endpoint, "missing", "s", "b {{name}}")
    assert main(argv(endpoint, tmp_path, "--ses-template", "missing")) == 0
    assert len(endpoint.messages()) == 2


@pytest.mark.parametrize(
    "extra",
    [
        ("--ses-template", "x", "--ses-inline"),
        ("--ses-inline",),
        ("--ses-template", "x", "--transport", "file", "--dir", "out"),
        ("--ses-template", "x", "--header", "X-A: b"),
    ],
)
def test_bad_combinations_are_usage_errors(
    endpoint: SESEndpoint, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    write_rows(tmp_path / "rows.csv", 1)
    assert main(argv(endpoint, tmp_path, *extra)) == 2
    assert not endpoint.messages()
