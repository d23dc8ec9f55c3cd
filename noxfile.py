"""Developer and CI sessions. ``nox -l`` lists them; ``nox -s tests-3.13`` runs one."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = os.environ.get("CI") == "true"

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite (real moto, aiosmtpd, redis-server, uvicorn servers)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def timing(session: nox.Session) -> None:
    """Wall-clock rate precision at a server (end to end, and 4 processes through Redis).

    Sensitive to machine load: run it on a quiet machine.
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-m", "timing", "-v", *session.posargs)


@nox.session(python="3.11")
def timing_campaign(session: nox.Session) -> None:
    """The rate-precision campaign quoted in docs/rate-limiting.md (about 30 minutes).

    Every setup 20 times at R=200 (machine idle, then with 2 CPU-bound processes) and 5
    times at R=14. ``nox -s timing_campaign -- --runs 3`` runs a shorter one.
    """
    session.install("-e", ".[test]")
    args = session.posargs or ["--runs", "20"]
    session.run("python", "-m", "tests.rate_campaign", "--rate", "200", "--busy", "both", *args)
    session.run("python", "-m", "tests.rate_campaign", "--rate", "14", "--runs", "5")


@nox.session(python="3.13")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    paths = ["asyncmailer", "tests", "bench", "examples", "docs/_ext", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(python=["3.10", "3.13"])
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[lint]")
    session.run("mypy", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the docs site with mkdocs --strict."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(session.create_tmp() + "/site"))


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """The README's main job: a rich message through SESTransport to the local SES endpoint."""
    session.install(".")
    session.run("python", "-m", "asyncmailer", "demo", *session.posargs)


def _npm_install(session: nox.Session) -> None:
    session.run("npm", "install", "--no-audit", "--no-fund", "--prefix", "bench", external=True)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Full benchmarks against the peers (npm packages installed into bench/, never committed)."""
    session.install("-e", ".[bench]")
    _npm_install(session)
    session.run("python", "bench/bench_compose.py", "--write-docs", *session.posargs)
    for script in ("bench_send.py", "bench_rate.py", "bench_looplag.py", "bench_queue.py"):
        session.run("python", f"bench/{script}", "--write-docs")
    session.run("python", "bench/bench_redis_limiter.py", "--write-docs")


@nox.session(python="3.11")
def bench_quick(session: nox.Session) -> None:
    """A short benchmark smoke run (CI): proves the scripts and peers still work."""
    session.install("-e", ".[bench]")
    _npm_install(session)
    session.run("python", "bench/bench_compose.py", "--rounds", "1", "--scale", "0.2")
    session.run("python", "bench/bench_send.py", "--quick")
    session.run("python", "bench/bench_rate.py", "--quick", "--no-plot")
    session.run("python", "bench/bench_looplag.py", "--quick")
    session.run("python", "bench/bench_queue.py", "--sizes", "1000", "10000", "--rounds", "1")


@nox.session(python="3.11")
def faults(session: nox.Session) -> None:
    """The long fault campaign: 10 000+ messages through injected throttling, 5xx and drops."""
    session.install("-e", ".[test]")
    messages = os.environ.get("ASYNCMAILER_FAULT_MESSAGES", "10000")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "tests/test_reliability_faults.py",
        "-k",
        "campaign",
        env={"ASYNCMAILER_FAULT_MESSAGES": messages},
    )


@nox.session(python="3.11")
def outbox_campaign(session: nox.Session) -> None:
    """The outbox crash campaign: 10 000 messages, worker processes SIGKILLed every 2 s.

    ``ASYNCMAILER_OUTBOX_MESSAGES=2000 nox -s outbox_campaign`` runs a shorter one; the
    figures are printed and written to ``outbox-campaign.json``.
    """
    session.install("-e", ".[test]")
    messages = os.environ.get("ASYNCMAILER_OUTBOX_MESSAGES", "10000")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-s",
        "tests/test_outbox_campaign.py",
        env={
            "ASYNCMAILER_OUTBOX_MESSAGES": messages,
            "ASYNCMAILER_OUTBOX_REPORT": "outbox-campaign.json",
        },
    )


@nox.session(python="3.11")
def fuzz(session: nox.Session) -> None:
    """The long hypothesis campaign (100 000 examples per property; ~20 min per compose property).

    ``HYPOTHESIS_MAX_EXAMPLES=20000 nox -s fuzz`` runs a slice that finishes sooner.
    """
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "tests/test_compose_properties.py",
        *[p for p in ("tests/test_send_properties.py",) if os.path.exists(p)],
        env={"HYPOTHESIS_PROFILE": "long"},
    )


@nox.session(python="3.11")
def bulk_memory(session: nox.Session) -> None:
    """send_bulk streaming 1 000 000 destinations: peak RSS growth must stay under 50 MB."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/test_ses_bulk.py",
        "-k",
        "memory",
        *session.posargs,
        env={"ASYNCMAILER_BULK_MEMORY": "1000000"},
    )
