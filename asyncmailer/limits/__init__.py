"""Rate limiters: the interface, the in-process default, and the Redis-backed shared one."""

from __future__ import annotations

from asyncmailer.limits.base import AdaptiveRate, Grant, RateLimiter
from asyncmailer.limits.local import LocalRateLimiter
from asyncmailer.limits.redis import RedisRateLimiter

__all__ = ["AdaptiveRate", "Grant", "LocalRateLimiter", "RateLimiter", "RedisRateLimiter"]
