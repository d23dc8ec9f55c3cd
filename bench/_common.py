"""What the send-path benchmarks share: the message, the endpoint process, workers, docs.

The local SES endpoint (``python -m asyncmailer.testing``) always runs in its own process
so that its CPU time is never counted as the client's. Each measured run is a separate
worker process (Python or Node) that warms up, then sends flat out for a fixed time and
prints one JSON line: ``{"sent", "wall", "cpu", ...}`` (CPU = the worker's own
``time.process_time()`` / ``process.cpuUsage()`` delta over the measured phase).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DOCS = ROOT / "docs" / "benchmarks.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asyncmailer.message import Message  # noqa: E402
from asyncmailer.mime import compose_sync  # noqa: E402
from asyncmailer.testing import RemoteEndpoint  # noqa: E402

#: The realistic transactional email every contender sends (text + html alternative).
FROM = "Shop <shop@example.com>"
TO = "Ada Lovelace <ada@example.org>"
SUBJECT = "Your order #12345 is confirmed"
TEXT = "Hello Ada,\n\nThanks for your order #12345. Your café latte beans ship tomorrow.\n" * 12
HTML = (
    "<html><body>" + "<p>Hello <b>Ada</b>, thanks for your order #12345. "
    "Your café latte beans ship tomorrow.</p>\n" * 30 + "</body></html>"
)
#: Dummy credentials: the endpoint does not check signatures (the client still signs).
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"


def message() -> Message:
    """The benchmark message as an asyncmailer :class:`Message`."""
    return Message(from_=FROM, to=TO, subject=SUBJECT, text=TEXT, html=HTML)


def prebuilt_raw() -> bytes:
    """The benchmark message composed once: what the "prebuilt bytes" contenders send."""
    return compose_sync(message()).raw


def client_config(concurrency: int) -> dict[str, Any]:
    """``AioConfig``/``Config`` options of every raw client: as ``SESTransport`` makes its own.

    A pool of at least ``concurrency`` connections, botocore's retries off (one attempt),
    no parameter validation.
    """
    return {
        "max_pool_connections": max(10, concurrency),
        "retries": {"mode": "standard", "total_max_attempts": 1},
        "parameter_validation": False,
    }


def message_json() -> str:
    """The message fields as JSON, for the Node workers."""
    return json.dumps({"from": FROM, "to": TO, "subject": SUBJECT, "text": TEXT, "html": HTML})


class EndpointProcess:
    """``python -m asyncmailer.testing`` in a child process, with its control API."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asyncmailer.testing", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        #: The endpoint's URL (first line it prints).
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.close()
            raise RuntimeError(f"the endpoint did not start (got {self.url!r})")
        #: Control API client (stats, reset, configure).
        self.remote = RemoteEndpoint(self.url)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the endpoint has used (Linux /proc)."""
        return process_cpu(self.proc.pid)

    def close(self) -> None:
        """Stop the endpoint (SIGTERM, then wait)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def endpoint(*args: str) -> Iterator[EndpointProcess]:
    """Run the local SES endpoint in a child process for the duration of the block."""
    proc = EndpointProcess(*args)
    try:
        yield proc
    finally:
        proc.close()


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid``, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_json(cmd: Sequence[str], *, timeout: float = 600.0) -> dict[str, Any]:
    """Run a worker command and return the JSON object on its last stdout line."""
    out = subprocess.run(
        list(cmd), capture_output=True, text=True, cwd=BENCH, timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])}... failed ({out.returncode}):\n{out.stderr[-3000:]}"
        )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON from {' '.join(cmd[:4])}...:\n{out.stdout[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def node_packages() -> list[str]:
    """The Nodemailer aliases installed under bench/node_modules (needs ``node``)."""
    if shutil.which("node") is None:
        return []
    modules = BENCH / "node_modules"
    wanted = ["nodemailer6", "nodemailer10", "@aws-sdk/client-ses", "@aws-sdk/client-sesv2"]
    missing = [name for name in wanted if not (modules / name).is_dir()]
    if missing:
        print(
            f"note: {', '.join(missing)} not installed (npm install --prefix bench); "
            "skipping the Node contenders",
            file=sys.stderr,
        )
        return []
    return ["nodemailer6", "nodemailer10"]


def node_version() -> str:
    """``Node.js vX.Y.Z``, or ``no Node.js``."""
    if shutil.which("node") is None:
        return "no Node.js"
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return f"Node.js {out.stdout.strip()}"


def machine() -> str:
    """One line describing where the numbers come from."""
    import aiobotocore
    import botocore

    load = os.getloadavg()[0]
    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"aiobotocore {aiobotocore.__version__} (botocore {botocore.__version__}), "
        f"{node_version()}, {os.cpu_count()} CPUs (load average {load:.1f} at the start: "
        "a shared machine)"
    )


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def write_section(title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section of docs/benchmarks.md with ``body``.

    Other sections are left exactly as they are.
    """
    heading = f"## {title}"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    section = f"{heading}\n\n{body.strip()}\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("" if end < 0 else text[end:])
    DOCS.write_text(text)


def command_line() -> str:
    """The command that is running, as a user would type it."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(script)
    args = list(sys.argv[1:])
    # Output-only options do not change what is measured: leave them out of the docs.
    for option in ("--json", "--plot"):
        while option in args:
            index = args.index(option)
            del args[index : index + 2]
    return " ".join(["python", shown, *args])


class Ticker:
    """Measures event-loop lag: how late a ``sleep(interval)`` loop wakes up.

    Start it with ``task = asyncio.create_task(ticker.run())``; stop with ``ticker.stop()``
    then ``await task``. ``lags`` holds each wake-up's overshoot in seconds of wall time;
    ``busy`` holds the CPU time the event-loop thread spent during each sleep (what other
    callbacks ran before the ticker could; unlike ``lags``, it does not grow when the
    machine is so loaded that the process waits for a core).
    """

    def __init__(self, interval: float = 0.001) -> None:
        #: The sleep the ticker asks for, seconds.
        self.interval = interval
        #: Wall-clock overshoot of every wake-up, seconds.
        self.lags: list[float] = []
        #: Loop-thread CPU seconds spent during every sleep.
        self.busy: list[float] = []
        self._running = True

    async def run(self) -> None:
        """Tick until :meth:`stop`."""
        import asyncio

        clock, cpu = time.perf_counter, time.thread_time
        while self._running:
            before, cpu_before = clock(), cpu()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, clock() - before - self.interval))
            self.busy.append(cpu() - cpu_before)

    def stop(self) -> None:
        """Make :meth:`run` return after its current tick."""
        self._running = False


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
