"""The OpenAPI document, corrected where FastAPI's defaults misdescribe the API.

- Errors are sent as ``application/problem+json`` with the Problem schema;
  FastAPI puts a response model under ``application/json`` and adds its own
  ``HTTPValidationError`` for 422, neither of which the API ever sends.
- The headers the API requires are declared optional (so that a missing one
  is a 400 problem naming it, not a framework 422); the document says they
  are required, and declares the bearer schemes.
- Operations with a JSON body can answer 400 for a body that is not JSON.
- The ``webhooks`` section (OpenAPI 3.1) describes what the hub POSTs to tenants'
  endpoints, one entry per event type, each pinned to its ``type``.
- The rules the API enforces in code are published where JSON Schema can say
  them: the header patterns, and metadata's key and string-value rules at any
  depth (a recursive ``MetadataValue``). What JSON Schema cannot compare (a
  backoff cap against its base) is said in words and an ``x-`` note.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from integration_hub.domain import models, routing
from integration_hub.domain.tenants import TENANT_ID
from integration_hub.entrypoints.api.routes import IDEMPOTENCY_KEY_PATTERN

PROBLEM_MEDIA = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
REQUIRED_HEADERS = {"x-tenant", "authorization", "x-country", "idempotency-key"}
HEADER_PATTERNS = {
    "x-tenant": TENANT_ID.pattern,
    "x-country": routing.COUNTRY_PATTERN,
    "idempotency-key": IDEMPOTENCY_KEY_PATTERN,
}
METADATA_VALUE_REF = "#/components/schemas/MetadataValue"


def _metadata_object() -> dict[str, Any]:
    return {
        "type": "object",
        "propertyNames": {"pattern": models.ONE_LINE_PATTERN},
        "additionalProperties": {"$ref": METADATA_VALUE_REF},
    }


METADATA_VALUE = {
    "description": "a metadata value: strings may hold tab, LF and CR, no other control",
    "anyOf": [
        {"type": "string", "pattern": models.TEXT_PATTERN},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": METADATA_VALUE_REF}},
        _metadata_object(),
    ],
}
SCHEMES = {
    "tenantKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "a tenant API key (`ihub_...`); send X-Tenant with the key's tenant",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "the operator token set in IHUB_ADMIN_TOKEN",
    },
}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA: {"schema": {"$ref": PROBLEM_REF}}},
    }


def _fix_operation(path: str, operation: dict[str, Any]) -> None:
    for status, response in operation.get("responses", {}).items():
        if status.isdigit() and int(status) >= 400:
            operation["responses"][status] = _problem_response(
                response.get("description") or "error"
            )
    if "requestBody" in operation:
        operation["responses"].setdefault("400", _problem_response("the body is not JSON"))
        operation["responses"].setdefault("422", _problem_response("invalid field"))
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "header" and parameter["name"].lower() in REQUIRED_HEADERS:
            parameter["required"] = True
            parameter["schema"] = {"type": "string", "title": parameter["name"]}
            pattern = HEADER_PATTERNS.get(parameter["name"].lower())
            if pattern is not None:
                parameter["schema"]["pattern"] = pattern
    if path.startswith("/v1/receipts/"):
        # Called by the providers, authenticated by their signature: no key.
        operation["security"] = []
    elif path.startswith("/v1/"):
        operation["security"] = [{"tenantKey": []}]
    elif path.startswith("/admin/"):
        operation["security"] = [{"adminToken": []}]


def _pin_event_type(name: str, operation: dict[str, Any]) -> None:
    # Event types share a payload model; each webhook says which ``type`` it carries.
    content = operation["requestBody"]["content"]["application/json"]
    content["schema"] = {
        "allOf": [content["schema"], {"properties": {"type": {"const": name}}}],
    }


def _fix_schemas(schemas: dict[str, Any]) -> None:
    request = schemas.get("NotificationRequest")
    if request is not None:
        metadata = request["properties"]["metadata"]
        metadata["anyOf"] = [_metadata_object(), {"type": "null"}]
        schemas["MetadataValue"] = METADATA_VALUE
    limits = schemas.get("TenantLimits")
    if limits is not None:
        # JSON Schema cannot compare two fields: said in words, and as a note
        # a client generator can read.
        limits["x-constraints"] = ["backoff_cap_seconds >= backoff_base_seconds"]
        cap = limits["properties"]["backoff_cap_seconds"]
        cap["description"] = (
            "at least backoff_base_seconds (the one sent, or the tenant's): a smaller cap is 422"
        )


def install(app: FastAPI) -> None:
    """Serve the corrected document at /openapi.json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
            webhooks=app.webhooks.routes,
        )
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                _fix_operation(path, operation)
        for name, item in schema.get("webhooks", {}).items():
            for operation in item.values():
                _pin_event_type(name, operation)
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {}).update(SCHEMES)
        _fix_schemas(components.setdefault("schemas", {}))
        for unused in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
