"""Parser time at n and 8n: every parser of hostile input must stay linear.

Each row is one input shape (a run of spaces in ``To``, a raw ``.eml`` whose ``To`` folds
over lines of spaces, nested comments, a DKIM body ending in CRLF pairs...); the columns
are the best of ``--runs`` timings at n and at 8n and their ratio. Linear code gives ~8×,
quadratic ~64×::

    python bench/bench_parsers.py            # n = 4000
    python bench/bench_parsers.py --n 8000 --runs 7
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from asyncmailer.address import parse_addresses
from asyncmailer.errors import MailError
from asyncmailer.mime import compose_sync


def _address(text: str) -> Callable[[], object]:
    def run() -> object:
        try:
            return parse_addresses(text, field="to")
        except MailError:
            return None

    return run


def _raw_eml(n: int) -> Callable[[], object]:
    folds = "\r\n".join(" " * 900 for _ in range(max(1, n // 900)))
    raw = f"From: a@example.com\r\nTo: a\r\n{folds}\r\n x\r\n\r\nbody\r\n".encode()

    def run() -> object:
        try:
            return compose_sync(raw)
        except MailError:
            return None

    return run


def _dkim(kind: str) -> Callable[[int], Callable[[], object]]:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from asyncmailer.dkim import DKIMSigner

    signer = DKIMSigner("example.com", "s", private_key=ed25519.Ed25519PrivateKey.generate())

    def make(n: int) -> Callable[[], object]:
        if kind == "trailing":
            raw = b"From: a@example.com\r\n\r\nx" + b"\r\n" * n + b"\r"
        else:
            raw = b"From: a@example.com\r\nSubject: x" + b"\r\n y" * n + b"\r\n\r\nbody\r\n"
        return lambda: signer.sign_bytes(raw, now=1)

    return make


SHAPES: dict[str, Callable[[int], Callable[[], object]]] = {
    'to = "a" + " " * n + "x"': lambda n: _address("a" + " " * n + "x"),
    'to = "a " * n + "x"': lambda n: _address("a " * n + "x"),
    'to = "(" * n + "a@b.c"': lambda n: _address("(" * n + "a@b.c"),
    "to = '\"' + 'a' * n": lambda n: _address('"' + "a" * n),
    'to = "<" + \'"a"\' * n': lambda n: _address("<" + '"a"' * n),
    'to = "a@" + "ü" * n + ".de"': lambda n: _address("a@" + "ü" * n + ".de"),
    "raw .eml, To folded over spaces": _raw_eml,
    "DKIM, body ends CRLF * n + CR": _dkim("trailing"),
    "DKIM, header folded n times": _dkim("folded"),
}


def best(func: Callable[[], object], runs: int) -> float:
    """The fastest of ``runs`` calls, in seconds of CPU time (preemption excluded)."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        func()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n = args.n
    print(f"{'input':<36} {'n=' + str(n):>12} {'8n=' + str(8 * n):>12} {'ratio':>7}")
    for name, make in SHAPES.items():
        small = best(make(n), args.runs)
        large = best(make(8 * n), args.runs)
        print(f"{name:<36} {small * 1e3:>9.2f} ms {large * 1e3:>9.2f} ms {large / small:>6.1f}x")


if __name__ == "__main__":
    main()
