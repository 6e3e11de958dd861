"""RFC 9457 problem details: every error response of the API goes through here."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from integration_hub import tracing
from integration_hub.domain import errors

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:integration-hub:problem:"


class FieldError(BaseModel):
    """One invalid field."""

    field: str
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = Field(examples=[f"{TYPE_PREFIX}validation-error"])
    title: str
    status: int
    detail: str
    field: str | None = Field(default=None, description="the offending field or header")
    errors: list[FieldError] | None = None
    supported_countries: list[str] | None = None
    channel: str | None = Field(default=None, description="suppressed: the channel")
    reason: str | None = Field(default=None, description="suppressed, forbidden: the reason")


class BadRequest(errors.HubError):
    """The request is malformed."""


class PayloadTooLarge(errors.HubError):
    """The request body is too large."""


class UnsupportedMediaType(errors.HubError):
    """The request body is not JSON."""


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds)))}


# (status, slug, title) per domain error; the first matching class wins.
_MAPPING: list[tuple[type[errors.HubError], int, str, str]] = [
    (BadRequest, 400, "bad-request", "Bad request"),
    (PayloadTooLarge, 413, "payload-too-large", "Payload too large"),
    (UnsupportedMediaType, 415, "unsupported-media-type", "Unsupported media type"),
    (errors.Unauthenticated, 401, "unauthenticated", "Unauthenticated"),
    (errors.Forbidden, 403, "forbidden", "Forbidden"),
    (errors.NotFound, 404, "not-found", "Not found"),
    (errors.UnsupportedCountry, 422, "unsupported-country", "Unsupported country"),
    (errors.InvalidRecipient, 422, "invalid-recipient", "Invalid recipient"),
    (errors.IdempotencyConflict, 422, "idempotency-key-reused", "Idempotency-Key reused"),
    (errors.IdempotencyInProgress, 409, "idempotency-in-progress", "Request in progress"),
    (errors.TenantExists, 409, "tenant-exists", "Tenant exists"),
    (errors.Conflict, 409, "conflict", "Conflict"),
    (errors.DataRejected, 422, "data-rejected", "Data rejected"),
    (errors.Suppressed, 422, "suppressed", "Recipient suppressed"),
    (errors.Unavailable, 503, "unavailable", "Service unavailable"),
    (errors.RateLimited, 429, "rate-limited", "Too many requests"),
    (errors.HubError, 422, "invalid-field", "Invalid field"),
]


def from_hub_error(exc: errors.HubError) -> JSONResponse:
    """The response for a domain error."""
    status, slug, title = next(
        (status, slug, title) for cls, status, slug, title in _MAPPING if isinstance(exc, cls)
    )
    headers: dict[str, str] = {}
    if isinstance(exc, errors.Unavailable | errors.IdempotencyInProgress | errors.RateLimited):
        headers.update(_retry_after(exc.retry_after))
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    supported = exc.supported if isinstance(exc, errors.UnsupportedCountry) else None
    suppressed = exc if isinstance(exc, errors.Suppressed) else None
    locked = exc if isinstance(exc, errors.LiftForbidden) else None
    return problem(
        status,
        slug,
        title,
        exc.message,
        field=exc.field,
        headers=headers,
        supported_countries=supported,
        channel=suppressed.channel if suppressed else None,
        reason=suppressed.reason if suppressed else (locked.reason if locked else None),
    )


def internal_error() -> JSONResponse:
    """The 500 of a bug: nothing about its cause reaches the client."""
    return problem(
        500,
        "internal-error",
        "Internal error",
        "an unexpected error occurred; it has been logged",
    )


def _location(loc: tuple[int | str, ...], at: object = None) -> str:
    # FastAPI prefixes the source ("body", "query", "header"); the client
    # thinks in field names, so "body.recipient.phone" -> "recipient.phone".
    # A validator that looked inside its field (metadata) or across fields
    # (a model rule) says where in the error's context: "metadata" plus
    # "order.note" -> "metadata.order.note".
    parts = [str(p) for p in loc]
    inner = [at] if isinstance(at, str) and at else []
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:] or ([] if inner else parts)
    return ".".join(parts + inner)


def from_validation_error(exc: RequestValidationError) -> JSONResponse:
    """422 naming each invalid field; 400 for a body that is not JSON at all."""
    details = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in details):
        return problem(
            400, "malformed-json", "Malformed JSON", "the body is not valid JSON", field="body"
        )
    field_errors = [
        {
            "field": _location(tuple(e.get("loc", ())), (e.get("ctx") or {}).get("at")),
            "message": str(e.get("msg", "invalid")),
        }
        for e in details
    ]
    first = field_errors[0] if field_errors else {"field": "body", "message": "invalid"}
    return problem(
        422,
        "validation-error",
        "Validation error",
        f"{first['field']}: {first['message']}",
        field=first["field"],
        errors=field_errors,
    )


def _allowed_methods(request: Request) -> list[str]:
    # Starlette answers 405 from the first route whose path matches, while a
    # path may be served by several routes (GET and POST): the API's own
    # document knows every method of every path.
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {m.upper() for m in item if m in _HTTP_METHODS}
    return sorted(methods)


_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    async def hub_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.HubError)
        return from_hub_error(exc)

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return from_validation_error(exc)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # The JSON parser gave up in a way other than a syntax error
            # (invalid UTF-8, absurd nesting, a 5000-digit integer).
            return problem(
                400, "malformed-json", "Malformed JSON", "the body is not valid JSON", field="body"
            )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(exc.status_code, slug, str(exc.detail), str(exc.detail), headers=headers)

    async def breach(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's doing (never a 409): the body says nothing
        # of it, the log says which rule broke (docs/runbook.md).
        assert isinstance(exc, errors.InvariantBreach)
        hub = getattr(request.app.state, "hub", None)
        if hub is not None and hub.metrics is not None:
            hub.metrics.metrics.invariant_breach(exc.kind)
        with tracing.log_scope(breach=exc.kind):
            log.error(
                "invariant breach (%s) on %s %s: %s",
                exc.kind,
                request.method,
                request.url.path,
                exc.message,
            )
        return internal_error()

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return internal_error()

    app.add_exception_handler(errors.HubError, hub_error)
    app.add_exception_handler(errors.InvariantBreach, breach)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
