"""The OpenAPI 3.1 document's ``webhooks`` section: what the hub POSTs to tenants' endpoints."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest
from openapi_spec_validator import validate

from integration_hub.config import Settings
from integration_hub.domain import webhooks as wh
from integration_hub.domain.webhooks import EventType
from integration_hub.entrypoints.api import create_app
from unit.test_webhooks import notification_row

HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    spec: dict[str, Any] = create_app(Settings(database_url="sqlite:///:memory:")).openapi()
    return spec


def body_schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    """The request body schema of webhook ``name``, its references resolved against the
    document (as a receiver's validator would)."""
    schema = document["webhooks"][name]["post"]["requestBody"]["content"]["application/json"]
    return {**schema["schema"], "components": document["components"]}


def test_the_document_is_valid_openapi_3_1_with_a_webhook_per_event_type(
    document: dict[str, Any],
) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert set(document["webhooks"]) == {str(t) for t in EventType}


def test_every_webhook_requires_the_three_standard_webhooks_headers(
    document: dict[str, Any],
) -> None:
    for item in document["webhooks"].values():
        parameters = item["post"]["parameters"]
        assert {p["name"] for p in parameters if p["in"] == "header" and p["required"]} == HEADERS


def test_each_documented_payload_is_what_the_hub_sends(document: dict[str, Any]) -> None:
    done = wh.notification_event(EventType.DONE, notification_row(), 1_800_000_000.0)
    schema = body_schema(document, "notification.done")
    jsonschema_rs.validate(schema, json.loads(done.body()))
    assert set(schema["components"]["schemas"]["NotificationEventData"]["properties"]) == set(
        wh.DATA_FIELDS
    )
    with pytest.raises(jsonschema_rs.ValidationError):  # each webhook is pinned to its type
        jsonschema_rs.validate(
            body_schema(document, "notification.failed"), json.loads(done.body())
        )
    endpoint = wh.Endpoint(
        id="ep_1",
        tenant="acme",
        url="https://h.example.com/",
        created_at=0,
        updated_at=0,
        secrets={},
    )
    ping = wh.ping_event(endpoint, 1_800_000_000.0)
    jsonschema_rs.validate(body_schema(document, "webhook.test"), json.loads(ping.body()))
    disabled = wh.disabled_event(endpoint, wh.DisabledReason.GONE, 1_800_000_000.0)
    jsonschema_rs.validate(body_schema(document, "endpoint.disabled"), json.loads(disabled.body()))


def test_the_webhook_routes_are_in_the_document_for_tenants_and_operators(
    document: dict[str, Any],
) -> None:
    paths = document["paths"]
    for base, scheme in (("/v1", "tenantKey"), ("/admin/v1/tenants/{tenant_id}", "adminToken")):
        one = base + "/webhooks/{endpoint_id}"
        expected = {
            base + "/webhooks": {"get", "post"},
            one: {"get", "patch", "delete"},
            one + "/rotate-secret": {"post"},
            one + "/deliveries": {"get"},
            one + "/deliveries/{delivery_id}/retry": {"post"},
            one + "/test": {"post"},
            one + "/replay": {"post"},
        }
        for path, methods in expected.items():
            assert set(paths[path]) == methods, path
            for operation in paths[path].values():
                assert operation["security"] == [{scheme: []}]
    created = paths["/v1/webhooks"]["post"]["responses"]
    assert {"201", "409", "422"} <= set(created)
    assert created["409"]["content"].keys() == {"application/problem+json"}
