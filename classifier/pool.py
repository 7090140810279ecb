"""A bounded pool for CPU-bound work (decoding and inference), off the event loop.

At most `threads` jobs run at once; at most `max_in_flight` run or wait. Beyond that a request is refused
at once with 503 and ``Retry-After`` instead of joining an ever longer queue. The routes ask before reading the
body (`check_capacity`), so a refusal costs no multipart parsing (uvicorn drains the unread body and keeps the
connection). `on_change` hears the number in flight whenever it changes (the metrics' gauge).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio

from classifier.errors import ServiceError

T = TypeVar("T")


class InferencePool:
    def __init__(
        self,
        threads: int,
        max_in_flight: int,
        retry_after_s: int,
        on_change: Callable[[int], object] = lambda in_flight: None,
    ):
        self._limiter = anyio.CapacityLimiter(threads)
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self._on_change = on_change

    def check_capacity(self) -> None:
        """Refuse (503 with ``Retry-After``) when `max_in_flight` jobs already run or wait."""
        if self.in_flight >= self.max_in_flight:
            raise ServiceError(
                503,
                "busy",
                f"the server is busy ({self.in_flight} predictions in flight); retry in {self.retry_after_s} s",
                {"Retry-After": str(self.retry_after_s)},
            )

    async def run(self, function: Callable[..., T], *args: object) -> T:
        self.check_capacity()  # again: other requests may have filled the pool while this body arrived
        self.in_flight += 1
        self._on_change(self.in_flight)
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)
        finally:
            self.in_flight -= 1
            self._on_change(self.in_flight)
