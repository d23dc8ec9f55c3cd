"""Developer and CI sessions. ``nox -l`` lists them; ``nox -s tests-3.13`` runs one."""

from __future__ import annotations

import os
import sys

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox itself requires tomli there
    import tomli as tomllib

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = os.environ.get("CI") == "true"

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite (real moto, aiosmtpd, redis-server, uvicorn servers)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


# Every module of the package except __main__ (which would run the CLI).
_IMPORT_EVERY_MODULE = (
    "import importlib, pkgutil, asyncmailer\n"
    "for m in pkgutil.walk_packages(asyncmailer.__path__, 'asyncmailer.'):\n"
    "    if not m.name.endswith('__main__'):\n"
    "        importlib.import_module(m.name)"
)


def _declared_floors(extra: str) -> list[str]:
    """``name==floor`` for each ``>=`` bound that installing ``.[extra]`` brings in."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    with open("pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    groups, seen = [extra], set()
    while groups:
        group = groups.pop()
        if group in seen:
            continue
        seen.add(group)
        for text in project["optional-dependencies"][group]:
            requirement = Requirement(text)
            if requirement.name == project["name"]:  # asyncmailer[all]: more groups
                groups.extend(requirement.extras)
            else:
                requirements.append(requirement)
    # Two extras may bound one package (dkim and feedback: cryptography): .[test] installs the
    # higher floor, so that is the lowest version it can test.
    floors: dict[str, Version] = {}
    for requirement in requirements:
        for specifier in requirement.specifier:
            if specifier.operator == ">=":
                floor = Version(specifier.version)
                floors[requirement.name] = max(floor, floors.get(requirement.name, floor))
    return [f"{name}=={version}" for name, version in sorted(floors.items())]


@nox.session(python="3.10")
def tests_lowest(session: nox.Session) -> None:
    """The whole suite with every dependency at the lowest version pyproject.toml allows.

    Each ``>=`` floor of the runtime dependencies, every extra and the test tools is pinned
    exactly (read from pyproject.toml at session time, so a raised or added floor is tested the
    moment it is declared); ``uv pip compile`` resolves the rest to the newest release compatible
    with those pins, as a user's fresh install would. A floor that cannot be installed with the
    others fails the resolution here, naming the conflict. botocore follows from aiobotocore's
    own narrow pin (2.13.0 allows botocore <1.34.107), so nothing backtracks. The installed
    versions are printed so a log shows what was tested.
    """
    session.install("uv")
    tmp = session.create_tmp()
    floors = os.path.join(tmp, "floors.txt")
    with open(floors, "w") as file:
        file.write("\n".join(_declared_floors("test")) + "\n")
    constraints = os.path.join(tmp, "constraints-lowest.txt")
    session.run(
        "uv",
        "pip",
        "compile",
        "pyproject.toml",
        "--extra",
        "test",
        "--constraint",
        floors,
        "--resolution",
        "lowest-direct",
        "--python",  # the session's interpreter: uv must not fetch one of its own
        "python",
        "--no-header",
        "--no-annotate",
        "--quiet",
        "--output-file",
        constraints,
    )
    session.install("-c", constraints, "-e", ".[test]")
    session.run("python", "-m", "pip", "freeze", "--exclude-editable")
    # A deprecation the oldest releases raise at import time would surface in users' -W error runs.
    session.run("python", "-W", "error", "-c", _IMPORT_EVERY_MODULE)
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


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
    """mypy --strict over the package and tests/typing; pyright (strict) over tests/typing.

    tests/typing is user code, never executed: its pinned errors (a misspelled field, a
    wrong field type, a missing await) must stay errors for both checkers.
    """
    session.install("-e", ".[lint]")
    session.run("mypy", *session.posargs)
    session.run("pyright", "--pythonversion", session.python, "tests/typing")


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
