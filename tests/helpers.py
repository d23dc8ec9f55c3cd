"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import functools
import math
import selectors
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def worst_window(
    times: Sequence[float], weights: Sequence[float] | None = None, window: float = 1.0
) -> float:
    """Largest total weight of events inside any half-open window ``[t, t + window)``."""
    order = sorted(range(len(times)), key=times.__getitem__)
    ts = [times[i] for i in order]
    ws = [1.0 if weights is None else weights[i] for i in order]
    best = total = 0.0
    start = 0
    for end, t in enumerate(ts):
        total += ws[end]
        while t - ts[start] >= window:
            total -= ws[start]
            start += 1
        best = max(best, total)
    return best


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real I/O without blocking and turns every wait into a jump of virtual time."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualClockLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self.loop
        if loop is None or timeout is None:
            return super().select(timeout)
        events = super().select(0)
        if not events and not loop._ready:  # type: ignore[attr-defined]
            # Only timers can run next: jump to the first one. Move by at least one ulp, as
            # real time would, so that a timer re-armed "now" by float residue still fires.
            loop.now = max(loop.now + timeout, math.nextafter(loop.now, math.inf))
        return events


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever nothing is ready.

    Like aiolimiter's own tests patching ``loop.time``: timing logic runs exactly, with no
    wake-up latency and no real seconds spent. Only for code without real network I/O.
    """

    def __init__(self) -> None:
        selector = _VirtualSelector()
        super().__init__(selector=selector)
        selector.loop = self
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualClockLoop`."""
    loop = VirtualClockLoop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)


def virtual_time(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Decorate an ``async def`` test to run on a :class:`VirtualClockLoop`."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        run_virtual(test(*args, **kwargs))

    return wrapper


def sesv2_has(shape: str, member: str) -> bool:
    """Whether the installed botocore's SESv2 model has ``shape.member`` (newer features)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sesv2")
    return member in model.shape_for(shape).members


def needs_sesv2(shape: str, member: str) -> Any:
    """A skip marker for tests of an SESv2 model feature the installed botocore may lack.

    Inline templates (``Template.TemplateContent``) arrived in SESv2 models after botocore
    1.34.106, the floor aiobotocore 2.13 pins: ``nox -s tests_lowest`` skips those tests,
    and the library refuses such a send with a ConfigurationError naming the version.
    """
    import pytest

    return pytest.mark.skipif(
        not sesv2_has(shape, member),
        reason=f"the installed botocore's SESv2 model has no {shape}.{member}",
    )
