"""The FastAPI app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integration_hub import __version__
from integration_hub.adapters.receipts.common import MAX_BODY_BYTES as RECEIPT_MAX_BYTES
from integration_hub.bootstrap import Hub, build_hub
from integration_hub.config import Settings
from integration_hub.domain import errors
from integration_hub.entrypoints import metrics
from integration_hub.entrypoints.api import (
    admin,
    openapi,
    problems,
    receipts,
    routes,
    shedding,
    suppressions,
    webhooks,
)
from integration_hub.entrypoints.api.context import FASTAPI_TELEMETRY, RequestContext


class BodyLimit:
    """Refuse bodies over the limit with 413 before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _limit(self, scope: Scope) -> int:
        # Providers' receipts (an SNS message is up to 256 KiB before JSON
        # escaping) have their own bound, whatever IHUB_MAX_BODY_BYTES says.
        if str(scope.get("path", "")).startswith(receipts.PREFIX + "/"):
            return max(self.max_bytes, RECEIPT_MAX_BYTES)
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and b"transfer-encoding" in headers:
            # Two framings for one body (RFC 9112 6.3): a classic smuggling
            # vector, and a way to hide the real size. Refuse it.
            response = problems.problem(
                400,
                "bad-request",
                "Bad request",
                "send either Content-Length or Transfer-Encoding, not both",
                field="Content-Length",
            )
            await response(scope, receive, send)
            return
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        # Count what actually arrives, whatever was declared: read up to the
        # limit before the app sees anything, so an oversized body is refused
        # whole, as a 413.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], then=receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        detail = f"the body is larger than {limit} bytes"
        response = problems.problem(
            413, "payload-too-large", "Payload too large", detail, field="body"
        )
        await response(scope, receive, send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


def create_app(settings: Settings | None = None, *, hub: Hub | None = None) -> FastAPI:
    """The API. Given a ``hub`` it uses (and does not close) it; otherwise it builds one."""
    settings = settings or (hub.settings if hub else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = hub is None
        app.state.hub = hub if hub is not None else await build_hub(settings)
        try:
            yield
        finally:
            if owned:
                await app.state.hub.close()

    app = FastAPI(
        title="Integration Hub",
        version=__version__,
        summary="Multi-country, multi-tenant notification integration hub",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY,
    )
    problems.install(app)
    app.include_router(routes.router)
    app.include_router(suppressions.router)
    app.include_router(webhooks.router)
    app.include_router(receipts.router)
    app.include_router(admin.router)
    webhooks.document(app)
    openapi.install(app)

    @app.get("/healthz", include_in_schema=True, tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={
            503: {"description": "the store or the queue is unreachable, or migrations are missing"}
        },
    )
    async def readyz(request: Request) -> dict[str, Any]:
        """Store and queue answer and the schema is current: safe to route traffic here."""
        hub: Hub = request.app.state.hub
        try:
            await hub.store.get_tenant("readyz-probe")
            depth = await hub.queue.stats()
            behind = await hub.schema_check() if hub.schema_check else None
        except errors.HubError as exc:
            raise errors.Unavailable(f"not ready: {exc.message}", retry_after=1.0) from None
        except Exception as exc:  # e.g. a table gone: not ready, never a 500
            detail = f"not ready: the store failed ({type(exc).__name__})"
            raise errors.Unavailable(detail, retry_after=1.0) from None
        if behind is not None:
            raise errors.Unavailable(f"not ready: {behind}", retry_after=5.0)
        return {
            "status": "ready",
            "queue_visible": depth.visible,
            "queue_in_flight": depth.in_flight,
        }

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Outside BodyLimit: an overloaded API refuses before reading the body.
    app.add_middleware(shedding.InFlightLimit, limit=settings.max_in_flight_requests)
    metrics.install(app, settings)  # its timer sees shed and refused requests too
    app.add_middleware(RequestContext)  # outermost: even a 413 or a 503 has a request id
    return app
