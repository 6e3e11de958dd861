"""Serving /metrics: a route on the API, a timer on every request, and a listener of its own.

Access: with IHUB_METRICS_TOKEN set, both /metrics endpoints want
``Authorization: Bearer <that token>``; tenant API keys never open them, as
the exposition names every tenant. Unset, /metrics is open, for the embedded
hub on 127.0.0.1 and for deployments that keep scrapes on a private network
(IHUB_METRICS_PORT serves it apart from the API).
"""

from __future__ import annotations

import hmac
import logging
import time

from aiohttp import web
from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integration_hub.adapters.metrics import MetricsExporter
from integration_hub.bootstrap import Hub
from integration_hub.config import Settings
from integration_hub.domain import errors

log = logging.getLogger(__name__)

PATH = "/metrics"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def authorized(settings: Settings, authorization: str | None) -> bool:
    """Whether ``authorization`` opens /metrics: always without a token, else only that token."""
    token = settings.metrics_token
    if token is None:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), expected)


def _exporter(hub: Hub) -> MetricsExporter:
    if hub.metrics is None:
        raise errors.NotFound("metrics are not enabled in this process", field="path")
    return hub.metrics


class RequestTimer:
    """Observes every API request's duration, labelled by route template, not by raw path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            hub: Hub | None = getattr(scope["app"].state, "hub", None)
            if hub is not None and hub.metrics is not None:
                # Starlette leaves the matched route in the scope; an unmatched
                # path (a scanner's guess) must not become a label value.
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                seconds = time.perf_counter() - started
                hub.metrics.metrics.request(scope["method"], route, status, seconds)


def install(app: FastAPI, settings: Settings) -> None:
    """Add GET /metrics and the request timer to the API."""

    @app.get(PATH, include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not authorized(settings, request.headers.get("authorization")):
            raise errors.Unauthenticated(
                "/metrics needs the IHUB_METRICS_TOKEN bearer token", field="Authorization"
            )
        exporter = _exporter(request.app.state.hub)
        body, content_type = await exporter.negotiate(request.headers.get("accept", ""))
        return Response(body, headers={"Content-Type": content_type})

    app.add_middleware(RequestTimer)
    if settings.metrics_token is None and settings.host not in LOOPBACK:
        log.warning(
            "/metrics is open to anyone who reaches the API on %s, tenants included:"
            " set IHUB_METRICS_TOKEN, or scrape IHUB_METRICS_PORT on a private network",
            settings.host,
        )


async def start_listener(hub: Hub) -> web.AppRunner:
    """Serve /metrics on IHUB_METRICS_PORT (the worker's way to be scraped)."""
    settings = hub.settings
    exporter = _exporter(hub)

    async def metrics(request: web.Request) -> web.Response:
        if not authorized(settings, request.headers.get("Authorization")):
            return web.json_response(
                {
                    "type": "urn:integration-hub:problem:unauthenticated",
                    "title": "Unauthenticated",
                    "status": 401,
                    "detail": "/metrics needs the IHUB_METRICS_TOKEN bearer token",
                    "field": "Authorization",
                },
                status=401,
                content_type="application/problem+json",
                headers={"WWW-Authenticate": "Bearer"},
            )
        body, content_type = await exporter.negotiate(request.headers.get("Accept", ""))
        # Set as a header: aiohttp's content_type argument refuses parameters.
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get(PATH, metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.metrics_port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("metrics on http://%s:%s%s", settings.host, settings.metrics_port, PATH)
    return runner
