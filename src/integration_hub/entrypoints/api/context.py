"""Per request: a request id, a SERVER span and the log context.

A small ASGI middleware rather than the OpenTelemetry FastAPI
instrumentation: the request id and the log context need a middleware of
their own anyway, and one span per request is all we want (ADR 0012).
"""

from __future__ import annotations

import re
import uuid

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integration_hub import tracing

REQUEST_ID_HEADER = b"x-request-id"
# A client's own id is echoed when it is short and plain (no spaces, no
# control characters to smuggle into log lines); otherwise we make one.
WELL_FORMED = re.compile(r"^[A-Za-z0-9._:/+=-]{8,128}$")
_TRACE_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}


def new_request_id() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex


class RequestContext:
    """Gives every HTTP request an id (``X-Request-Id``), a span and a log context."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        carrier: dict[str, str | None] = {}
        for name, value in scope.get("headers") or []:
            if name == REQUEST_ID_HEADER:
                given = value.decode("latin-1")
            elif name in _TRACE_HEADERS:
                carrier[_TRACE_HEADERS[name]] = value.decode("latin-1")
        request_id = given if given and WELL_FORMED.match(given) else new_request_id()
        method = str(scope.get("method", "GET"))
        echo = (REQUEST_ID_HEADER, request_id.encode("latin-1"))

        with (
            tracing.log_scope(request_id=request_id),
            tracing.tracer().start_as_current_span(
                method,
                context=tracing.extract(carrier),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "ihub.request_id": request_id},
            ) as span,
        ):

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), echo]
                    status = int(message["status"])
                    if span.is_recording():
                        span.set_attribute("http.response.status_code", status)
                        if status >= 500:
                            span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            finally:
                # FastAPI puts the matched route in the scope: name the span
                # after its template, never the concrete path with its ids.
                route = getattr(scope.get("route"), "path", None)
                if route and span.is_recording():
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
