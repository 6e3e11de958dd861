"""Load shedding: a bound on requests in flight, answered 503 + Retry-After beyond it.

Without a bound, offered load above capacity piles up as waiting requests:
each holds memory and a connection, latency grows without limit and clients
time out, not knowing whether their request was accepted. Refusing at once
with a retryable answer keeps latency and memory flat and tells the client
exactly what to do; nothing is stored for a refused request, so retrying
with the same Idempotency-Key is safe.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from integration_hub.entrypoints.api import problems

# Probes and the metrics scrape must keep answering under overload: they are
# how an orchestrator and an operator tell "busy" from "dead".
_EXEMPT = ("/healthz", "/readyz", "/metrics")


class InFlightLimit:
    """Answer 503 with Retry-After while ``limit`` requests are already being served."""

    def __init__(self, app: ASGIApp, limit: int, retry_after_seconds: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_seconds)
        self.in_flight = 0
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"] in _EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            # One event loop per process: the counter needs no lock.
            self.shed += 1
            response = problems.problem(
                503,
                "overloaded",
                "Overloaded",
                f"more than {self.limit} requests in flight; retry after the delay given",
                headers={"Retry-After": self.retry_after},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
