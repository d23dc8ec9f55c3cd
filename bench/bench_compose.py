"""Composition benchmark: asyncmailer vs the stdlib vs Nodemailer 6/10 MailComposer.

Two messages, the same for every implementation:

(a) text + html alternative (~1 KB text, ~3 KB html, a few non-ASCII characters);
(b) the same plus a 100 KB binary attachment.

Implementations run interleaved, several rounds; each round times N compositions in a row
and the table shows the median per-message time and throughput. Nodemailer runs in Node
(`node bench/node/compose.js`), timed inside Node so process start-up is not counted.

Setup (once): ``npm install --prefix bench``

Run::

    python bench/bench_compose.py                 # table and ratios
    python bench/bench_compose.py --write-docs  # also rewrite docs/benchmarks.md "## Composition"
    python bench/bench_compose.py --lag  # also measure event-loop lag, 20 MB attachment
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncmailer.message import Attachment, Message  # noqa: E402
from asyncmailer.mime import compose, compose_sync  # noqa: E402

FROM = "Shop <shop@example.com>"
TO = "Ada Lovelace <ada@example.com>"
SUBJECT = "Your order #12345 is confirmed"
TEXT = "Hello Ada,\n\nThanks for your order #12345. Your café latte beans ship tomorrow.\n" * 12
HTML = (
    "<html><body>" + "<p>Hello <b>Ada</b>, thanks for your order #12345. "
    "Your café latte beans ship tomorrow.</p>\n" * 30 + "</body></html>"
)
ATTACHMENT_NAME = "invoice.pdf"
ITERATIONS = {"a": 2000, "b": 500}
DOCS = ROOT / "docs" / "benchmarks.md"


def _message(scenario: str, blob: bytes) -> Message:
    attachments = [Attachment(content=blob, filename=ATTACHMENT_NAME)] if scenario == "b" else []
    return Message(
        from_=FROM, to=TO, subject=SUBJECT, text=TEXT, html=HTML, attachments=attachments
    )


def _stdlib(scenario: str, blob: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = FROM
    msg["To"] = TO
    msg["Subject"] = SUBJECT
    msg.set_content(TEXT)
    msg.add_alternative(HTML, subtype="html")
    if scenario == "b":
        msg.add_attachment(blob, maintype="application", subtype="pdf", filename=ATTACHMENT_NAME)
    return msg.as_bytes(policy=email.policy.SMTP)


def _time(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(50, n)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def _time_async(message: Message, n: int) -> float:
    async def run() -> float:
        for _ in range(min(50, n)):
            await compose(message)
        start = time.perf_counter()
        for _ in range(n):
            await compose(message)
        return (time.perf_counter() - start) / n

    return asyncio.run(run())


def _time_node(fixtures: Path, scenario: str, package: str, n: int) -> float:
    out = subprocess.run(
        [
            "node",
            str(ROOT / "bench" / "node" / "compose.js"),
            str(fixtures),
            scenario,
            package,
            str(n),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT / "bench",
    )
    result = json.loads(out.stdout)
    return float(result["seconds"]) / int(result["iterations"])


def _node_available() -> list[str]:
    if shutil.which("node") is None:
        return []
    found = []
    for package in ("nodemailer6", "nodemailer10"):
        if (ROOT / "bench" / "node_modules" / package).is_dir():
            found.append(package)
    return found


def _lag(size_mb: int, *, raw: bool = False) -> tuple[float, float]:
    """(compose seconds, worst event-loop gap seconds) for one message with a big attachment.

    ``raw``: compose that message once, then measure composing its bytes (the prebuilt path:
    line endings, line lengths, headers, envelope).
    """
    blob = os.urandom(size_mb * 1024 * 1024)
    message: Message | bytes = Message(
        from_=FROM, to=TO, text="big", attachments=[Attachment(content=blob, filename="big.bin")]
    )

    async def run() -> tuple[float, float]:
        nonlocal message
        if raw:
            assert isinstance(message, Message)
            message = (await compose(message)).raw
        await compose(
            Message(
                from_=FROM, to=TO, text="warm", attachments=[Attachment(content=blob[:2_000_000])]
            )
        )
        done = False
        worst = 0.0

        async def ticker() -> None:
            nonlocal worst
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                worst = max(worst, now - last)
                last = now

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        await compose(message)
        elapsed = time.perf_counter() - start
        done = True
        await task
        return elapsed, worst

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the iteration counts")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"rewrite '## Composition' in {DOCS}"
    )
    parser.add_argument(
        "--lag", action="store_true", help="measure loop lag for a 20 MB attachment"
    )
    args = parser.parse_args()

    blob = random.Random(1).randbytes(100 * 1024)
    fixtures = Path(tempfile.mkdtemp(prefix="bench-compose-"))
    (fixtures / "attachment.bin").write_bytes(blob)
    (fixtures / "message.json").write_text(
        json.dumps(
            {
                "from": FROM,
                "to": TO,
                "subject": SUBJECT,
                "text": TEXT,
                "html": HTML,
                "attachment_name": ATTACHMENT_NAME,
            }
        )
    )
    node_packages = _node_available()
    if not node_packages:
        print(
            "note: Nodemailer not installed (npm install --prefix bench); skipping it",
            file=sys.stderr,
        )

    impls = [
        "asyncmailer compose()",
        "asyncmailer compose_sync()",
        "stdlib EmailMessage",
        *node_packages,
    ]
    samples: dict[tuple[str, str], list[float]] = {}
    sizes: dict[tuple[str, str], int] = {}
    for scenario in ("a", "b"):
        message = _message(scenario, blob)
        sizes[("asyncmailer", scenario)] = len(compose_sync(message).raw)
        sizes[("stdlib", scenario)] = len(_stdlib(scenario, blob))
        n = max(10, int(ITERATIONS[scenario] * args.scale))
        for round_no in range(args.rounds):
            order = impls[round_no % len(impls) :] + impls[: round_no % len(impls)]
            for impl in order:
                if impl == "asyncmailer compose()":
                    seconds = _time_async(message, n)
                elif impl == "asyncmailer compose_sync()":
                    seconds = _time(lambda m=message: compose_sync(m), n)
                elif impl == "stdlib EmailMessage":
                    seconds = _time(lambda s=scenario: _stdlib(s, blob), max(10, n // 4))
                else:
                    seconds = _time_node(fixtures, scenario, impl, n)
                samples.setdefault((impl, scenario), []).append(seconds)
    shutil.rmtree(fixtures, ignore_errors=True)

    median = {key: statistics.median(values) for key, values in samples.items()}
    lines = [
        "| implementation | (a) text+html µs/msg | (a) msgs/s "
        "| (b) +100 KB attachment µs/msg | (b) msgs/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for impl in impls:
        a, b = median[(impl, "a")], median[(impl, "b")]
        lines.append(f"| {impl} | {a * 1e6:,.0f} | {1 / a:,.0f} | {b * 1e6:,.0f} | {1 / b:,.0f} |")
    ours = "asyncmailer compose()"
    ratios = [
        "",
        "Ratios (throughput of `compose()` ÷ other; > 1 means asyncmailer is faster):",
        "",
    ]
    for impl in impls[2:]:
        ratios.append(
            f"- vs {impl}: (a) {median[(impl, 'a')] / median[(ours, 'a')]:.2f}×, "
            f"(b) {median[(impl, 'b')] / median[(ours, 'b')]:.2f}×"
        )
    table = "\n".join(lines + ratios)
    print(table)
    lag_text = ""
    if args.lag:
        elapsed, worst = _lag(20)
        raw_elapsed, raw_worst = _lag(20, raw=True)
        lag_text = (
            f"\n\nEvent-loop lag while composing one message with a 20 MB attachment (encoded in a "
            f"worker thread): compose took {elapsed * 1000:.0f} ms, the worst gap seen by a 1 ms "
            f"ticker task was {worst * 1000:.1f} ms. The same message given as its ~27 MB of "
            f"bytes (the prebuilt path, also in a worker thread): {raw_elapsed * 1000:.0f} ms, "
            f"worst gap {raw_worst * 1000:.1f} ms."
        )
        print(lag_text.strip())
    if args.write_docs:
        command = "python bench/bench_compose.py " + " ".join(sys.argv[1:])
        section = (
            "## Composition\n\n"
            f"Measured with `{command.strip()}` (after `npm install --prefix bench`) on "
            f"{platform.python_implementation()} {platform.python_version()}, "
            f"{_node_version()}, {os.cpu_count()} CPUs, {args.rounds} interleaved rounds, medians. "
            "Message (a) is a text + html alternative "
            f"({sizes[('asyncmailer', 'a')]:,} octets composed); "
            "(b) adds a 100 KB binary attachment "
            f"({sizes[('asyncmailer', 'b')]:,} octets). "
            "The stdlib builds an `EmailMessage` and calls `as_bytes(policy=email.policy.SMTP)`; "
            "Nodemailer builds with `MailComposer(...).compile().build()`.\n\n"
            f"{table}{lag_text}\n"
        )
        _write_section(section)
        print(f"wrote the Composition section of {DOCS}")


def _node_version() -> str:
    if shutil.which("node") is None:
        return "no Node.js"
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return f"Node.js {out.stdout.strip()}"


def _write_section(section: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n\n"
    start = text.find("## Composition")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("" if end < 0 else text[end:])
    DOCS.write_text(text)


if __name__ == "__main__":
    main()
