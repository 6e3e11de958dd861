"""Per request: a request id (``X-Request-Id``) and the log context.

The request's SERVER span is FastAPI's own (its native OpenTelemetry
support, on only when a tracer provider is installed; ``create_app`` keeps
it to that one span): this middleware runs inside it and tags it with the
request id, so a request id leads to its trace and back (ADR 0015).
"""

from __future__ import annotations

import re
import uuid

from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integration_hub import tracing

REQUEST_ID_HEADER = b"x-request-id"
# A client's own id is echoed when it is short and plain (no spaces, no
# control characters to smuggle into log lines); otherwise we make one.
WELL_FORMED = re.compile(r"^[A-Za-z0-9._:/+=-]{8,128}$")

# FastAPI(telemetry=...): the request span only. Operation spans triple the
# spans per request for little; FastAPI's OTel logs would record validation
# errors with their input (recipients); metrics are Prometheus's; and only
# the entry points install exporters.
FASTAPI_TELEMETRY: TelemetryConfig = {
    "tracing": True,
    "operation_spans": False,
    "logs": False,
    "metrics": False,
    "auto_configure": False,
}


def new_request_id() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex


class RequestContext:
    """Gives every HTTP request an id, echoed as ``X-Request-Id``, bound to its log lines."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (v.decode("latin-1") for k, v in scope.get("headers") or [] if k == REQUEST_ID_HEADER),
            None,
        )
        request_id = given if given and WELL_FORMED.match(given) else new_request_id()
        echo = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("ihub.request_id", request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), echo]
            await send(message)

        with tracing.log_scope(request_id=request_id):
            await self.app(scope, receive, send_with_id)
